package operate

import (
	"context"
	"time"

	"github.com/fraiseql/fraiseql-observer/adapters/postgres"
	"github.com/fraiseql/fraiseql-observer/application"
	"github.com/fraiseql/fraiseql-observer/application/admin"
	"github.com/fraiseql/fraiseql-observer/bootstrap/config"
	"github.com/fraiseql/fraiseql-observer/ports"
)

// DurableCommands are the operator commands of durable delivery: the
// delivery log. They run on the configuration's state database, or, for
// the memory topology, through the running service's admin API
// (*adminhttp.Client).
type DurableCommands interface {
	Deliveries(ctx context.Context, q admin.DeliveryQuery) (admin.DeliveryPage, error)
	Resend(ctx context.Context, req admin.ResendRequest) (admin.ResendReport, error)
}

// localDurable runs the durable-delivery use cases in this process.
type localDurable struct {
	deliveries *admin.Deliveries
	resend     *admin.Resend
}

func (l *localDurable) Deliveries(ctx context.Context, q admin.DeliveryQuery) (admin.DeliveryPage, error) {
	return l.deliveries.List(ctx, q)
}

func (l *localDurable) Resend(ctx context.Context, req admin.ResendRequest) (admin.ResendReport, error) {
	return l.resend.Resend(ctx, req)
}

// openDurable builds the durable-delivery commands over the state
// database the operator opened; resend searches the stores of all for the
// event.
func (o *Operator) openDurable(all admin.Stores) error {
	log, err := postgres.NewDeliveryLog(o.deps.DB.Pool, o.cfg.Database.ObserverSchema)
	if err != nil {
		return err
	}
	o.log = log
	o.durable = &localDurable{deliveries: &admin.Deliveries{Log: log}, resend: &admin.Resend{Stores: all, Resender: o.buildResender}}
	return nil
}

// recorded records the attempts next makes in the delivery log (unless
// delivery.log = "off"); the records are written when the operator closes.
func (o *Operator) recorded(next ports.ActionExecutor) ports.ActionExecutor {
	if o.cfg.Delivery.Log == config.DeliveryLogOff || o.log == nil {
		return next
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.writer == nil {
		w, err := application.NewDeliveryWriter(o.log, application.DeliveryWriterConfig{Logger: o.logger})
		if err != nil {
			return next
		}
		o.writer = w
		o.closers = append(o.closers, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			w.Flush(ctx)
		})
	}
	rec, err := application.NewDeliveryRecorder(next, o.writer, o.cfg.Delivery.Log == config.DeliveryLogAll, nil, nil)
	if err != nil {
		return next
	}
	return rec
}

// buildResender builds the observers and executors as buildRetrier does.
func (o *Operator) buildResender(ctx context.Context) (*application.Resender, error) {
	r, err := o.buildRetrier(ctx)
	if err != nil {
		return nil, err
	}
	return &application.Resender{Executor: r.Executor, Matcher: r.Matcher}, nil
}

// Durable returns the delivery-log commands.
func (o *Operator) Durable() DurableCommands { return o.durable }
