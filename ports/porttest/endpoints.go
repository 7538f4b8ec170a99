package porttest

import (
	"slices"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// RunEndpointStates checks the ports.EndpointStates contract. newStore
// must return an empty, isolated store on every call.
func RunEndpointStates(t *testing.T, newStore func(t *testing.T) ports.EndpointStates) {
	t.Helper()
	t.Run("ReportReplacesAndListsInOrder", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		probe := at(10 * time.Second)
		reports := []ports.EndpointState{
			{Endpoint: "https://b:443", Holder: "p1", State: "open", ConsecutiveFailures: 5, Since: at(0), NextProbe: &probe,
				LastError: "transient: status 503", ReportedAt: at(0)},
			{Endpoint: "https://a:443", Holder: "p1", State: "closed", Since: at(0), ReportedAt: at(0)},
			{Endpoint: "https://b:443", Holder: "p2", State: "closed", Since: at(time.Minute), ReportedAt: at(time.Minute)},
		}
		for _, r := range reports {
			if err := s.Report(t.Context(), r); err != nil {
				t.Fatalf("Report: %v", err)
			}
		}
		got, err := s.List(t.Context())
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		want := []ports.EndpointState{reports[1], reports[2]}
		if !slices.EqualFunc(got, want, sameEndpointState) {
			t.Fatalf("List = %+v, want %+v", got, want)
		}
		if err := s.Report(t.Context(), reports[0]); err != nil {
			t.Fatal(err)
		}
		got, _ = s.List(t.Context())
		if len(got) != 2 || !sameEndpointState(got[1], reports[0]) {
			t.Fatalf("after reporting b open again: %+v", got)
		}
	})
}

func sameEndpointState(a, b ports.EndpointState) bool {
	probe := (a.NextProbe == nil) == (b.NextProbe == nil) && (a.NextProbe == nil || a.NextProbe.Equal(*b.NextProbe))
	return probe && a.Endpoint == b.Endpoint && a.Holder == b.Holder && a.State == b.State &&
		a.ConsecutiveFailures == b.ConsecutiveFailures && a.Since.Equal(b.Since) && a.LastError == b.LastError && a.ReportedAt.Equal(b.ReportedAt)
}
