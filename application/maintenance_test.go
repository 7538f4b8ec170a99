package application_test

import (
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/memory"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/ports"
)

func TestMaintenancePrunesTheDeliveryLog(t *testing.T) {
	t.Parallel()
	clock := newClock()
	log := memory.NewDeliveryLog(0)
	for _, age := range []time.Duration{48 * time.Hour, 25 * time.Hour, 23 * time.Hour, time.Minute} {
		if err := log.Append(t.Context(), []ports.DeliveryRecord{{At: clock.Now().Add(-age)}}); err != nil {
			t.Fatal(err)
		}
	}
	m, err := application.NewMaintenance(application.MaintenanceConfig{Deliveries: log, Retention: 24 * time.Hour, Logger: discardLogger(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	m.Once(t.Context())
	got, err := log.List(t.Context(), ports.DeliveryFilter{})
	if err != nil || len(got) != 2 {
		t.Fatalf("after a round: %d records, %v; want the 2 younger than the 24h retention", len(got), err)
	}
	if _, err := application.NewMaintenance(application.MaintenanceConfig{Deliveries: log, Logger: discardLogger()}); err == nil {
		t.Error("a delivery log without retention was accepted")
	}
}
