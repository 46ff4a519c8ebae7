// Package cluster lets several flatfiler nodes share one data directory and
// one warehouse: a lease in PostgreSQL names the single node that writes
// (the leader); the others receive uploads into the shared directory and
// forward everything else to the leader.
//
// PostgreSQL's clock alone decides when a lease expires, so nodes' clocks
// do not matter. A leader counts its own time conservatively (from before
// each renewal was sent) and steps down before PostgreSQL could hand the
// lease to another node.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// schema is flatfiler's own table in the cluster's database. token grows
// with every new holder: a fencing token for whatever the holder writes.
const schema = `
CREATE TABLE IF NOT EXISTS flatfiler_leases (
	name        text PRIMARY KEY,
	holder      text NOT NULL,
	token       bigint NOT NULL,
	http_addr   text NOT NULL DEFAULT '',
	sql_addr    text NOT NULL DEFAULT '',
	acquired_at timestamptz NOT NULL,
	expires_at  timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS flatfiler_cluster (
	key   text PRIMARY KEY,
	value text NOT NULL
)`

// Migrate creates the cluster's table if it is not there.
func Migrate(ctx context.Context, db *pgxpool.Pool) error {
	// Two nodes starting at once would race on CREATE TABLE's catalog
	// insert; an advisory lock puts them in line.
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7146812)`); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if _, err := tx.Exec(ctx, schema); err != nil {
		return fmt.Errorf("cluster: creating flatfiler_leases: %w", err)
	}
	return tx.Commit(ctx)
}

// Shards records the cluster's shard count at its first node's start and
// checks every later node against it: partners are placed by it, so a
// node that counted otherwise would look for them in the wrong warehouse.
func Shards(ctx context.Context, db *pgxpool.Pool, want int) error {
	var have string
	err := db.QueryRow(ctx, `
WITH mine AS (INSERT INTO flatfiler_cluster (key, value) VALUES ('shards', $1) ON CONFLICT (key) DO NOTHING RETURNING value)
SELECT value FROM mine UNION ALL SELECT value FROM flatfiler_cluster WHERE key = 'shards' LIMIT 1`, strconv.Itoa(want)).Scan(&have)
	if err != nil {
		return fmt.Errorf("cluster: recording the shard count: %w", err)
	}
	if have != strconv.Itoa(want) {
		return fmt.Errorf("cluster: this cluster has %s shards; the node was started with --shards %d (partners are placed by the count, which cannot change)", have, want)
	}
	return nil
}

// ShardOf places a partner: a hash of its ID over the shards, so every
// node, and every command, finds it in the same warehouse.
func ShardOf(partnerID string, shards int) int {
	h := fnv.New32a()
	h.Write([]byte(partnerID))
	return int(h.Sum32() % uint32(shards))
}

// Holder is who holds a lease, and where it answers.
type Holder struct {
	Node     string
	Token    int64
	HTTPAddr string
	SQLAddr  string
	Expires  time.Time
}

// ErrNoHolder: nobody holds the lease (never taken, or expired).
var ErrNoHolder = errors.New("no node holds the lease")

// ErrLost: the lease was taken by another node, or not renewed in time.
var ErrLost = errors.New("lease lost")

// Lease is one node's claim on one named lease.
type Lease struct {
	DB   *pgxpool.Pool
	Name string // what is leased: "warehouse"
	Node string // this node's name, unique in the cluster
	TTL  time.Duration
}

// TryAcquire takes the lease if it is free, expired, or already this
// node's. It returns the new fencing token and when, by this node's clock,
// it must be renewed by at the latest.
func (l *Lease) TryAcquire(ctx context.Context) (token int64, deadline time.Time, err error) {
	sent := time.Now()
	err = l.DB.QueryRow(ctx, `
INSERT INTO flatfiler_leases AS l (name, holder, token, acquired_at, expires_at)
VALUES ($1, $2, 1, now(), now() + $3 * interval '1 millisecond')
ON CONFLICT (name) DO UPDATE
	SET holder = excluded.holder, token = l.token + 1, http_addr = '', sql_addr = '',
	    acquired_at = now(), expires_at = excluded.expires_at
	WHERE l.expires_at < now()
RETURNING token`, l.Name, l.Node, l.TTL.Milliseconds()).Scan(&token)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("cluster: acquiring lease %s: %w", l.Name, err)
	}
	return token, sent.Add(l.TTL), nil
}

// Renew extends a held lease; ErrLost if another node holds it now.
func (l *Lease) Renew(ctx context.Context, token int64) (deadline time.Time, err error) {
	sent := time.Now()
	tag, err := l.DB.Exec(ctx, `
UPDATE flatfiler_leases SET expires_at = now() + $4 * interval '1 millisecond'
WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at >= now()`, l.Name, l.Node, token, l.TTL.Milliseconds())
	if err != nil {
		return time.Time{}, fmt.Errorf("cluster: renewing lease %s: %w", l.Name, err)
	}
	if tag.RowsAffected() == 0 {
		return time.Time{}, ErrLost
	}
	return sent.Add(l.TTL), nil
}

// Advertise records where the holder answers.
func (l *Lease) Advertise(ctx context.Context, token int64, httpAddr, sqlAddr string) error {
	tag, err := l.DB.Exec(ctx, `UPDATE flatfiler_leases SET http_addr = $4, sql_addr = $5 WHERE name = $1 AND holder = $2 AND token = $3`,
		l.Name, l.Node, token, httpAddr, sqlAddr)
	if err != nil {
		return fmt.Errorf("cluster: advertising lease %s: %w", l.Name, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLost
	}
	return nil
}

// Release gives the lease up at once, so another node need not wait for it
// to expire.
func (l *Lease) Release(ctx context.Context, token int64) error {
	_, err := l.DB.Exec(ctx, `UPDATE flatfiler_leases SET expires_at = now() - interval '1 microsecond', http_addr = '', sql_addr = ''
WHERE name = $1 AND holder = $2 AND token = $3`, l.Name, l.Node, token)
	if err != nil {
		return fmt.Errorf("cluster: releasing lease %s: %w", l.Name, err)
	}
	return nil
}

// CurrentHolder says who holds a lease now.
func CurrentHolder(ctx context.Context, db *pgxpool.Pool, name string) (Holder, error) {
	var h Holder
	err := db.QueryRow(ctx, `SELECT holder, token, http_addr, sql_addr, expires_at FROM flatfiler_leases WHERE name = $1 AND expires_at >= now()`, name).
		Scan(&h.Node, &h.Token, &h.HTTPAddr, &h.SQLAddr, &h.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return Holder{}, ErrNoHolder
	}
	if err != nil {
		return Holder{}, fmt.Errorf("cluster: reading lease %s: %w", name, err)
	}
	return h, nil
}

// Held is a lease this node holds, kept renewed until Release or until
// it is lost.
type Held struct {
	Token int64
	lease *Lease
	stop  context.CancelFunc
	lost  chan struct{}
	err   error
}

// Lost is closed when the lease is no longer renewed; Err says why.
func (h *Held) Lost() <-chan struct{} { return h.lost }

// Err is why the lease was lost, once Lost is closed.
func (h *Held) Err() error { <-h.lost; return h.err }

// Release stops renewing the lease and gives it up, so another node need
// not wait for it to expire.
func (h *Held) Release(ctx context.Context) error {
	h.stop()
	<-h.lost
	return h.lease.Release(ctx, h.Token)
}

// TryHold takes the lease if it is free, in one attempt, and keeps it
// renewed every TTL/3, whatever becomes of ctx, until Release or until it
// is lost: a renewal that fails (PostgreSQL out of reach) is tried again
// until the deadline the last good one gave; past it the lease counts as
// lost, since another node may hold it by then. nil: another node holds
// it. The attempt is bounded by a third of the TTL: an answer that comes
// late (PostgreSQL hung, then back) would give a lease already near its
// end by this node's clock.
func (l *Lease) TryHold(ctx context.Context) (*Held, error) {
	actx, cancel := context.WithTimeout(ctx, l.TTL/3)
	token, deadline, err := l.TryAcquire(actx)
	cancel()
	if err != nil || token == 0 {
		return nil, err
	}
	return l.keep(ctx, token, deadline), nil
}

// keep renews a lease just taken until Release or until it is lost.
func (l *Lease) keep(ctx context.Context, token int64, deadline time.Time) *Held {
	every := l.TTL / 3
	keep, stop := context.WithCancel(context.WithoutCancel(ctx))
	h := &Held{Token: token, lease: l, stop: stop, lost: make(chan struct{})}
	go func() {
		defer close(h.lost)
		t := time.NewTimer(min(every, time.Until(deadline)/2))
		defer t.Stop()
		for {
			select {
			case <-keep.Done():
				h.err = keep.Err()
				return
			case <-t.C:
			}
			// A renewal must not outlast the lease it renews.
			rctx, cancel := context.WithDeadline(keep, deadline)
			next, err := l.Renew(rctx, token)
			cancel()
			switch {
			case err == nil:
				deadline = next
			case errors.Is(err, ErrLost):
				h.err = ErrLost
				return
			case keep.Err() != nil:
				h.err = keep.Err()
				return
			case !time.Now().Before(deadline):
				h.err = fmt.Errorf("%w: not renewed in time: %w", ErrLost, err)
				return
			}
			t.Reset(min(every, time.Until(deadline)/2+time.Millisecond))
		}
	}()
	return h
}
