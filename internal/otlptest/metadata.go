package otlptest

import (
	"context"
	"net/http"

	"google.golang.org/grpc/metadata"
)

// grpcHeaders returns the request's metadata, keys canonical as in HTTP.
func grpcHeaders(ctx context.Context) map[string]string {
	out := map[string]string{}
	md, _ := metadata.FromIncomingContext(ctx)
	for k, v := range md {
		if len(v) > 0 {
			out[http.CanonicalHeaderKey(k)] = v[0]
		}
	}
	return out
}
