// Command receiver is the demo webhook receiver of the Docker Compose
// files in docker/: it listens on :8080 (or $RECEIVER_LISTEN), prints one
// line per delivery (method, path, webhook-id and the body) and answers
// 204, so `docker compose up` shows events flowing. It is not part of the
// product image (Dockerfile target demo-receiver).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// maxBody bounds what one delivery prints.
const maxBody = 64 << 10

func main() {
	addr := os.Getenv("RECEIVER_LISTEN")
	if addr == "" {
		addr = ":8080"
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, addr, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func serve(ctx context.Context, addr string, out io.Writer) error {
	srv := &http.Server{Addr: addr, Handler: handler(out), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Fprintf(out, "demo receiver listening on %s\n", addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// handler prints each request and answers 204.
func handler(out io.Writer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		id := r.Header.Get("webhook-id")
		if id == "" {
			id = "-"
		}
		fmt.Fprintf(out, "%s %s %s webhook-id=%s %s\n", time.Now().UTC().Format(time.RFC3339), r.Method, r.URL.Path, id, body)
		w.WriteHeader(http.StatusNoContent)
	})
}
