package bootstrap

import (
	"context"

	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	"github.com/fraiseql/fraiseql-observer/application/admin"
)

// DurableCommands are the operator commands of durable delivery: the
// delivery log. They run on the configuration's state database, or, for
// the memory topology, through the running service's admin API
// (*adminhttp.Client).
type DurableCommands interface {
	Deliveries(ctx context.Context, q admin.DeliveryQuery) (admin.DeliveryPage, error)
}

// localDurable runs the durable-delivery use cases in this process.
type localDurable struct {
	deliveries *admin.Deliveries
}

func (l *localDurable) Deliveries(ctx context.Context, q admin.DeliveryQuery) (admin.DeliveryPage, error) {
	return l.deliveries.List(ctx, q)
}

// openDurable builds the durable-delivery commands over the state
// database the operator opened.
func (o *Operator) openDurable() error {
	log, err := postgres.NewDeliveryLog(o.deps.db.Pool, o.cfg.Database.ObserverSchema)
	if err != nil {
		return err
	}
	o.durable = &localDurable{deliveries: &admin.Deliveries{Log: log}}
	return nil
}

// Durable returns the delivery-log commands.
func (o *Operator) Durable() DurableCommands { return o.durable }
