package admin

import "github.com/fraiseql/fraiseql-observer/application"

// LiveStatus is a running process's progress (the admin API's
// /api/observers/status): what it runs and how far its readers are.
type LiveStatus struct {
	Topology  string                              `json:"topology"`
	Role      string                              `json:"role"`
	Holder    string                              `json:"holder"`
	Readers   map[string]application.ReaderStatus `json:"readers"`
	Bridges   map[string]BridgeCounts             `json:"bridges,omitempty"`
	Observers int                                 `json:"observers"`
}

// BridgeCounts is what one bridge published.
type BridgeCounts struct {
	Published  int64 `json:"published"`
	Duplicates int64 `json:"duplicates"`
}
