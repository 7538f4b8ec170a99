package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fraiseql/fraiseql-observer/ports"
)

// Checkpoints stores reader positions in the observer schema's checkpoints
// table, so a restarted or replacing process resumes where the last one
// finished. Safe for concurrent use.
type Checkpoints struct {
	pool   *pgxpool.Pool
	table  string
	leases string // the leases table of the same schema: SaveFenced's fence
}

var _ ports.CheckpointStore = (*Checkpoints)(nil)

// NewCheckpoints returns a store on schema's checkpoints table (schema ""
// means "observer"); the table must exist (Migrate creates it).
func NewCheckpoints(pool *pgxpool.Pool, schema string) (*Checkpoints, error) {
	table, err := stateTable(pool, schema, "checkpoints")
	if err != nil {
		return nil, fmt.Errorf("postgres: new checkpoints: %w", err)
	}
	leases, _ := stateTable(pool, schema, "leases") // same arguments: cannot fail now
	return &Checkpoints{pool: pool, table: table, leases: leases}, nil
}

// Load returns the position saved for name; ok is false when there is none.
func (c *Checkpoints) Load(ctx context.Context, name string) (ports.Position, bool, error) {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	op := fmt.Sprintf("load checkpoint %q", name)
	var txid, seq int64
	err := c.pool.QueryRow(ctx, `SELECT txid, seq FROM `+c.table+` WHERE name = $1`, name).Scan(&txid, &seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return ports.Position{}, false, nil
	}
	if err != nil {
		return ports.Position{}, false, interpretError(op, err)
	}
	if txid < 0 {
		return ports.Position{}, false, fmt.Errorf("postgres: %s: stored txid %d is negative", op, txid)
	}
	return ports.Position{TxID: uint64(txid), Seq: seq}, true, nil
}

// Save stores pos for name, replacing what was there. Transaction ids
// (xid8) fit in a bigint in practice; one that does not is an error.
func (c *Checkpoints) Save(ctx context.Context, name string, pos ports.Position) error {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	op := fmt.Sprintf("save checkpoint %q", name)
	if pos.TxID > math.MaxInt64 {
		return fmt.Errorf("postgres: %s: txid %d does not fit in a bigint", op, pos.TxID)
	}
	_, err := c.pool.Exec(ctx, `INSERT INTO `+c.table+` (name, txid, seq, updated_at)
		VALUES ($1, $2, $3, now())
		ON CONFLICT (name) DO UPDATE SET txid = excluded.txid, seq = excluded.seq, updated_at = excluded.updated_at`,
		name, int64(pos.TxID), pos.Seq)
	return interpretError(op, err)
}

// SaveFenced stores pos for name only while fence.Holder holds the
// unexpired lease fence.Lease of the same schema's leases table (see
// Lease), in one statement: the lease row is locked (FOR SHARE) for the
// write, so another holder's Acquire cannot slip in between the check and
// the write. Otherwise it stores nothing and returns an error wrapping
// ports.ErrLeaseLost.
func (c *Checkpoints) SaveFenced(ctx context.Context, name string, pos ports.Position, fence ports.Fence) error {
	ctx, cancel := withOpTimeout(ctx)
	defer cancel()
	op := fmt.Sprintf("save checkpoint %q", name)
	if pos.TxID > math.MaxInt64 {
		return fmt.Errorf("postgres: %s: txid %d does not fit in a bigint", op, pos.TxID)
	}
	tag, err := c.pool.Exec(ctx, `WITH held AS (
			SELECT 1 FROM `+c.leases+`
			WHERE name = $4 AND holder = $5 AND expires_at > now()
			FOR SHARE
		)
		INSERT INTO `+c.table+` (name, txid, seq, updated_at)
		SELECT $1, $2, $3, now() FROM held
		ON CONFLICT (name) DO UPDATE SET txid = excluded.txid, seq = excluded.seq, updated_at = excluded.updated_at`,
		name, int64(pos.TxID), pos.Seq, fence.Lease, fence.Holder)
	if err != nil {
		return interpretError(op, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: %s: %s does not hold lease %q: %w", op, fence.Holder, fence.Lease, ports.ErrLeaseLost)
	}
	return nil
}
