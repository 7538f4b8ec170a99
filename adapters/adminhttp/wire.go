package adminhttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// The request and answer helpers of the handlers: query and body checks,
// JSON answers, the status of a use case's error.

// onlyParams refuses a query with a parameter not in known (a typo such
// as ?obsever= would otherwise widen the request to everything), or one
// given more than once, naming it.
func onlyParams(r *http.Request, known ...string) error {
	for k, vs := range r.URL.Query() {
		switch {
		case len(vs) > 1 && slices.Contains(known, k):
			// Only the first would count: ?observer=&observer=hooks would
			// act on every observer.
			return fmt.Errorf("query parameter %q given %d times: give it once", k, len(vs))
		case len(known) == 0:
			return fmt.Errorf("unknown query parameter %q: this route takes none", k)
		case !slices.Contains(known, k):
			return fmt.Errorf("unknown query parameter %q: want %s", k, strings.Join(known, ", "))
		}
	}
	return nil
}

func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	s := r.PathValue("id")
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		writeError(w, http.StatusBadRequest, fmt.Errorf("dead-letter id %q: want a positive integer", s))
		return 0, false
	}
	return id, true
}

// decodeBody decodes a small JSON body (at most maxSmallBody bytes, see
// writeBodyError), refusing unknown fields and anything after the value:
// a second document would otherwise be ignored.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSmallBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if err := dec.Decode(new(json.RawMessage)); !errors.Is(err, io.EOF) {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return errors.New("more than one JSON value")
	}
	return nil
}

// writeBodyError answers a body decodeBody refused: 413 when it is over
// maxSmallBody, else 400 with want, the shape expected.
func writeBodyError(w http.ResponseWriter, err error, want string) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("body: over %d bytes", tooLarge.Limit))
		return
	}
	writeError(w, http.StatusBadRequest, fmt.Errorf("body: want %s: %w", want, err))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// writeStoreError maps a use case's error to its status: 400 bad request,
// 404 unknown, 409 conflict, 503 store or process unable to serve, 500
// otherwise.
func writeStoreError(w http.ResponseWriter, err error) { writeError(w, storeErrorCode(err), err) }

// storeErrorCode is the status of an operator use case's error.
func storeErrorCode(err error) int {
	code := http.StatusInternalServerError
	var re *admin.RequestError
	switch {
	case errors.As(err, &re):
		code = http.StatusBadRequest
	case errors.Is(err, ports.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, admin.ErrReaderRunning), errors.Is(err, admin.ErrCheckpointElsewhere):
		code = http.StatusConflict
	case errors.Is(err, ports.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, admin.ErrNoActions),
		errors.Is(err, ports.ErrNotMigrated): // the store is not set up: this process cannot serve it (the error says to migrate)
		code = http.StatusServiceUnavailable
	}
	return code
}
