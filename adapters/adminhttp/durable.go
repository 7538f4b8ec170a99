package adminhttp

import "net/http"

// durableRoutes serves durable delivery: endpoint health.
func (s *server) durableRoutes(api *http.ServeMux) {
	if s.Endpoints != nil {
		api.HandleFunc("GET /api/observers/endpoints", func(w http.ResponseWriter, r *http.Request) {
			views, err := s.Endpoints.List(r.Context())
			if err != nil {
				writeStoreError(w, err)
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"endpoints": views})
		})
	}
}
