package adminhttp_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/adminhttp"
)

// The admin API's contract is openapi.json. This file keeps it true:
//   - every route the handler registers (enumerated from the registrations,
//     adminhttp.Handler.Routes) has its path and method in the document,
//     and every operation of the document is registered;
//   - every answer the handler tests receive (bundle.serve wraps every
//     handler they build in conform) is one the document declares for
//     that route and status, and its JSON validates against the declared
//     schema;
//   - after a full run, every route of every handler built answered a 2xx
//     at least once.

// openAPI is the parsed document.
var openAPI = func() map[string]any {
	var doc map[string]any
	if err := json.Unmarshal(adminhttp.OpenAPI, &doc); err != nil {
		panic("openapi.json: " + err.Error())
	}
	return doc
}()

// seen records the routes that answered a 2xx that conformed.
var seen = struct {
	sync.Mutex
	ok     map[string]bool
	routes map[string]bool // the routes of every handler under test
}{ok: map[string]bool{}, routes: map[string]bool{}}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if code == 0 && flag.Lookup("test.run").Value.String() == "" {
		// A full run: every route must have been exercised.
		var missing []string
		seen.Lock()
		for r := range seen.routes {
			if method, _, ok := strings.Cut(r, " "); ok && method != "" && !seen.ok[r] {
				missing = append(missing, r)
			}
		}
		seen.Unlock()
		sort.Strings(missing)
		if len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: routes no handler test saw answer 2xx (their schemas are unchecked): %v\n", missing)
			code = 1
		}
	}
	os.Exit(code)
}

// operation returns the document's operation for method and path.
func operation(method, path string) (map[string]any, bool) {
	item, ok := openAPI["paths"].(map[string]any)[path].(map[string]any)
	if !ok {
		return nil, false
	}
	op, ok := item[strings.ToLower(method)].(map[string]any)
	return op, ok
}

// Every registered route is documented, and every documented operation
// is registered.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	t.Parallel()
	b := setup(t, "tok")
	routes := b.handler.Routes()
	if len(routes) < 15 {
		t.Fatalf("only %d routes registered: %v", len(routes), routes)
	}
	registered := map[string]bool{}
	for _, r := range routes {
		method, path, ok := strings.Cut(r, " ")
		if !ok { // a mount: something must be documented below it
			path = method
			if !slices.ContainsFunc(docPaths(), func(p string) bool { return strings.HasPrefix(p, path) }) {
				t.Errorf("%s is mounted but nothing under it is documented", path)
			}
			continue
		}
		registered[strings.ToLower(method)+" "+path] = true
		if _, ok := operation(method, path); !ok {
			t.Errorf("route %q is not in openapi.json", r)
		}
	}
	for _, p := range docPaths() {
		for method := range openAPI["paths"].(map[string]any)[p].(map[string]any) {
			if !registered[method+" "+p] {
				t.Errorf("openapi.json documents %s %s, which is not registered", strings.ToUpper(method), p)
			}
		}
	}
}

func docPaths() []string {
	var out []string
	for p := range openAPI["paths"].(map[string]any) {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// The document is served as embedded, and each of its references
// resolves; every schema only uses keywords the checker knows.
func TestOpenAPIServedAndWellFormed(t *testing.T) {
	t.Parallel()
	b := setup(t, "")
	resp, err := http.Get(b.srv.URL + "/api/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(raw, adminhttp.OpenAPI) {
		t.Fatalf("GET /api/openapi.json = %d (%d bytes), want 200 and the embedded document", resp.StatusCode, len(raw))
	}
	if openAPI["openapi"] != "3.1.0" {
		t.Errorf("openapi = %v, want 3.1.0", openAPI["openapi"])
	}
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				if _, err := resolve(ref); err != nil {
					t.Errorf("%s: %v", where, err)
				}
			}
			if s, ok := v["schema"]; ok {
				if err := checkKeywords(s); err != nil {
					t.Errorf("%s: %v", where, err)
				}
			}
			for k, e := range v {
				walk(where+"/"+k, e)
			}
		case []any:
			for i, e := range v {
				walk(where+"/"+strconv.Itoa(i), e)
			}
		}
	}
	walk("#", openAPI)
	for name, s := range openAPI["components"].(map[string]any)["schemas"].(map[string]any) {
		if err := checkKeywords(s); err != nil {
			t.Errorf("schema %s: %v", name, err)
		}
	}
}

// The checker refuses what it does not check, as does the document's
// loader: a schema keyword it does not know would otherwise pass silently.
func TestSchemaChecker(t *testing.T) {
	t.Parallel()
	pos := map[string]any{"$ref": "#/components/schemas/Position"}
	cases := []struct {
		name   string
		schema any
		value  string
		ok     bool
	}{
		{"a position", pos, `{"txid": 1, "seq": 2}`, true},
		{"a key in PascalCase", pos, `{"TxID": 1, "seq": 2}`, false},
		{"a missing key", pos, `{"txid": 1}`, false},
		{"a fraction for an integer", pos, `{"txid": 1.5, "seq": 2}`, false},
		{"a string for an integer", pos, `{"txid": "1", "seq": 2}`, false},
		{"a status outside the enum", map[string]any{"$ref": "#/components/schemas/RetryResult"},
			`{"id": 1, "event_id": "e", "observer": "o", "action": "a", "status": "maybe"}`, false},
		{"a time that is not RFC 3339", map[string]any{"type": "string", "format": "date-time"}, `"yesterday"`, false},
		{"a time", map[string]any{"type": "string", "format": "date-time"}, `"2026-01-02T03:04:05.123Z"`, true},
		{"null where null is allowed", map[string]any{"type": []any{"array", "null"}}, `null`, true},
		{"null where it is not", map[string]any{"type": "array"}, `null`, false},
		{"a map of integers", map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "integer"}}, `{"a": 1, "b": "x"}`, false},
		{"an unknown keyword", map[string]any{"type": "string", "pattern": "^a"}, `"a"`, false},
	}
	for _, c := range cases {
		var v any
		dec := json.NewDecoder(strings.NewReader(c.value))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		errs := validate(c.schema, v, "$")
		if (len(errs) == 0) != c.ok {
			t.Errorf("%s: errors %v, want ok=%v", c.name, errs, c.ok)
		}
	}
}

// conform wraps the handler under test: each answer must be declared by
// the document for its route (the pattern the mux matched) and status, in
// one of its content types, and JSON must validate against the schema.
func conform(t *testing.T, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())

		// The muxes set the pattern they matched on r; the API's sub-mux
		// runs after the token check, so a refused request keeps the
		// mount's pattern.
		if err := check(r, rec); err != nil {
			t.Errorf("%s %s -> %d: does not conform to openapi.json: %v\n%s", r.Method, r.URL, rec.Code, err, rec.Body.Bytes())
		}
	})
}

func check(r *http.Request, rec *httptest.ResponseRecorder) error {
	method, path, ok := strings.Cut(r.Pattern, " ")
	switch {
	case r.Pattern == "":
		return nil // no route matched: the mux's own 404 or 405
	case !ok && rec.Code != http.StatusUnauthorized && rec.Code != http.StatusForbidden:
		// The mount matched but no route under it: the sub-mux's 404/405.
		if rec.Code == http.StatusNotFound || rec.Code == http.StatusMethodNotAllowed {
			return nil
		}
		return fmt.Errorf("mount %s answered %d", r.Pattern, rec.Code)
	case !ok:
		// Refused by the token check before any route matched: the answer
		// must be what every operation under the mount declares.
		return checkRefused(r.Pattern, rec)
	}
	op, found := operation(method, path)
	if !found {
		return fmt.Errorf("no operation %s %s", method, path)
	}
	if err := checkResponse(op, rec); err != nil {
		return err
	}
	if rec.Code < 300 {
		seen.Lock()
		seen.ok[r.Pattern] = true
		seen.Unlock()
	}
	return nil
}

func checkRefused(mount string, rec *httptest.ResponseRecorder) error {
	for _, p := range docPaths() {
		if !strings.HasPrefix(p, mount) {
			continue
		}
		for _, op := range openAPI["paths"].(map[string]any)[p].(map[string]any) {
			if err := checkResponse(op.(map[string]any), rec); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
	}
	return nil
}

func checkResponse(op map[string]any, rec *httptest.ResponseRecorder) error {
	responses := op["responses"].(map[string]any)
	resp, ok := responses[strconv.Itoa(rec.Code)].(map[string]any)
	if !ok {
		if resp, ok = responses["default"].(map[string]any); !ok {
			return fmt.Errorf("status %d is not declared", rec.Code)
		}
	}
	content, _ := resp["content"].(map[string]any)
	if len(content) == 0 {
		if rec.Body.Len() > 0 {
			return fmt.Errorf("status %d declares no body, got %d bytes", rec.Code, rec.Body.Len())
		}
		return nil
	}
	ct, _, err := mime.ParseMediaType(rec.Header().Get("Content-Type"))
	if err != nil {
		return fmt.Errorf("content type %q: %w", rec.Header().Get("Content-Type"), err)
	}
	media, ok := content[ct].(map[string]any)
	if !ok {
		return fmt.Errorf("content type %s is not declared for status %d", ct, rec.Code)
	}
	if ct != "application/json" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("body is not JSON: %w", err)
	}
	if errs := validate(media["schema"], v, "$"); len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// resolve follows a local reference (#/components/schemas/Name).
func resolve(ref string) (any, error) {
	const prefix = "#/components/schemas/"
	name, ok := strings.CutPrefix(ref, prefix)
	if !ok {
		return nil, fmt.Errorf("reference %q: only %s... are supported", ref, prefix)
	}
	s, ok := openAPI["components"].(map[string]any)["schemas"].(map[string]any)[name]
	if !ok {
		return nil, fmt.Errorf("reference %q: no such schema", ref)
	}
	return s, nil
}

// known is the JSON Schema subset the checker validates; description is
// documentation only.
var known = map[string]bool{
	"$ref": true, "type": true, "properties": true, "required": true, "additionalProperties": true,
	"items": true, "enum": true, "format": true, "minimum": true, "maximum": true, "description": true,
}

func checkKeywords(schema any) error {
	s, ok := schema.(map[string]any)
	if !ok {
		return fmt.Errorf("schema %v is not an object", schema)
	}
	for k, v := range s {
		if !known[k] {
			return fmt.Errorf("schema keyword %q is not checked by the contract test", k)
		}
		switch k {
		case "properties":
			for name, p := range v.(map[string]any) {
				if err := checkKeywords(p); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
			}
		case "items":
			if err := checkKeywords(v); err != nil {
				return err
			}
		case "additionalProperties":
			if _, isBool := v.(bool); !isBool {
				if err := checkKeywords(v); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// validate checks v (decoded with UseNumber) against schema and returns
// what does not hold, each with its JSON path.
func validate(schema any, v any, at string) []string {
	s, ok := schema.(map[string]any)
	if !ok {
		return []string{at + ": bad schema"}
	}
	if err := checkKeywords(s); err != nil {
		return []string{at + ": " + err.Error()}
	}
	if ref, ok := s["$ref"].(string); ok {
		target, err := resolve(ref)
		if err != nil {
			return []string{at + ": " + err.Error()}
		}
		return validate(target, v, at)
	}
	if t, ok := s["type"]; ok && !typeMatches(t, v) {
		return []string{fmt.Sprintf("%s: %s is not of type %v", at, describe(v), t)}
	}
	var errs []string
	if enum, ok := s["enum"].([]any); ok && !slices.ContainsFunc(enum, func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(v) }) {
		errs = append(errs, fmt.Sprintf("%s: %v is not one of %v", at, v, enum))
	}
	if s["format"] == "date-time" {
		if str, ok := v.(string); ok {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %q is not an RFC 3339 date-time", at, str))
			}
		}
	}
	if n, ok := v.(json.Number); ok {
		f, _ := n.Float64()
		if m, ok := s["minimum"].(float64); ok && f < m {
			errs = append(errs, fmt.Sprintf("%s: %s is below %v", at, n, m))
		}
		if m, ok := s["maximum"].(float64); ok && f > m {
			errs = append(errs, fmt.Sprintf("%s: %s is above %v", at, n, m))
		}
	}
	switch v := v.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		for _, r := range asList(s["required"]) {
			if _, ok := v[r.(string)]; !ok {
				errs = append(errs, fmt.Sprintf("%s: required key %q is missing", at, r))
			}
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if p, ok := props[k]; ok {
				errs = append(errs, validate(p, v[k], at+"."+k)...)
				continue
			}
			switch extra := s["additionalProperties"].(type) {
			case bool:
				if !extra {
					errs = append(errs, fmt.Sprintf("%s: key %q is not declared", at, k))
				}
			case map[string]any:
				errs = append(errs, validate(extra, v[k], at+"."+k)...)
			}
		}
	case []any:
		if items, ok := s["items"]; ok {
			for i, e := range v {
				errs = append(errs, validate(items, e, at+"["+strconv.Itoa(i)+"]")...)
			}
		}
	}
	return errs
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func typeMatches(t any, v any) bool {
	if s, ok := t.(string); ok {
		return isType(s, v)
	}
	return slices.ContainsFunc(asList(t), func(e any) bool { return isType(e.(string), v) })
}

func isType(t string, v any) bool {
	switch v := v.(type) {
	case nil:
		return t == "null"
	case bool:
		return t == "boolean"
	case string:
		return t == "string"
	case json.Number:
		if t == "number" {
			return true
		}
		_, err := strconv.ParseInt(v.String(), 10, 64)
		return t == "integer" && err == nil
	case map[string]any:
		return t == "object"
	case []any:
		return t == "array"
	}
	return false
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("%q", fmt.Sprint(v))
}

// openapi.json has no object with a key twice: a JSON decoder keeps the
// last, so the first would be silently dropped from the contract.
func TestOpenAPIHasNoDuplicateKeys(t *testing.T) {
	t.Parallel()
	dec := json.NewDecoder(bytes.NewReader(adminhttp.OpenAPI))
	type frame struct {
		keys    map[string]bool
		isObj   bool
		wantKey bool
	}
	var stack []*frame
	path := func() string { return fmt.Sprint(len(stack), " levels deep") }
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("openapi.json: %v", err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if top != nil && top.isObj {
					top.wantKey = true // the container was the value
				}
				stack = append(stack, &frame{keys: map[string]bool{}, isObj: v == '{', wantKey: v == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
		default:
			if top != nil && top.isObj {
				if top.wantKey {
					k := fmt.Sprint(v)
					if top.keys[k] {
						t.Errorf("openapi.json: key %q twice in one object (%s)", k, path())
					}
					top.keys[k] = true
					top.wantKey = false
				} else {
					top.wantKey = true
				}
			}
		}
	}
}
