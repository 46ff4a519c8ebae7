package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/flatfiler/flatfiler/internal/pgtest"
)

func testDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pg := pgtest.Start(t)
	ctx := context.Background()
	db, err := pgxpool.New(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	// A second node migrating finds the table there.
	if err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	return db
}

// expire ends a lease as if its holder had stopped renewing it TTL ago.
func expire(t *testing.T, db *pgxpool.Pool, name string) {
	t.Helper()
	if _, err := db.Exec(context.Background(), `UPDATE flatfiler_leases SET expires_at = now() - interval '1 second' WHERE name = $1`, name); err != nil {
		t.Fatal(err)
	}
}

func TestLeaseHasOneHolderAtATime(t *testing.T) {
	db := testDB(t)
	ctx := context.Background()
	a := &Lease{DB: db, Name: "warehouse", Node: "a", TTL: time.Minute}
	b := &Lease{DB: db, Name: "warehouse", Node: "b", TTL: time.Minute}

	tokA, _, err := a.TryAcquire(ctx)
	if err != nil || tokA != 1 {
		t.Fatalf("a: token %d, %v; want the first token", tokA, err)
	}
	if tok, _, err := b.TryAcquire(ctx); err != nil || tok != 0 {
		t.Fatalf("b took a held lease: token %d, %v", tok, err)
	}
	if err := a.Advertise(ctx, tokA, "127.0.0.1:1", "127.0.0.1:2"); err != nil {
		t.Fatal(err)
	}
	h, err := CurrentHolder(ctx, db, "warehouse")
	if err != nil || h.Node != "a" || h.HTTPAddr != "127.0.0.1:1" || h.SQLAddr != "127.0.0.1:2" {
		t.Fatalf("holder %+v, %v", h, err)
	}

	// Released: the next node takes it at once, with a greater token, and
	// the old token no longer renews or advertises.
	if err := a.Release(ctx, tokA); err != nil {
		t.Fatal(err)
	}
	if _, err := CurrentHolder(ctx, db, "warehouse"); !errors.Is(err, ErrNoHolder) {
		t.Fatalf("released lease still held: %v", err)
	}
	tokB, _, err := b.TryAcquire(ctx)
	if err != nil || tokB <= tokA {
		t.Fatalf("b: token %d, %v; want more than %d", tokB, err, tokA)
	}
	if _, err := a.Renew(ctx, tokA); !errors.Is(err, ErrLost) {
		t.Fatalf("a renewed b's lease: %v", err)
	}
	if err := a.Advertise(ctx, tokA, "x", "y"); !errors.Is(err, ErrLost) {
		t.Fatalf("a advertised on b's lease: %v", err)
	}

	// Expired without a release: taken over the same way.
	expire(t, db, "warehouse")
	if _, err := b.Renew(ctx, tokB); !errors.Is(err, ErrLost) {
		t.Fatalf("an expired lease was renewed: %v", err)
	}
	tokA2, _, err := a.TryAcquire(ctx)
	if err != nil || tokA2 <= tokB {
		t.Fatalf("a after expiry: token %d, %v", tokA2, err)
	}
}

func TestHeldLeaseIsLostWhenTakenOver(t *testing.T) {
	db := testDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := &Lease{DB: db, Name: "warehouse", Node: "a", TTL: 300 * time.Millisecond}
	held, err := a.TryHold(ctx)
	if err != nil || held == nil {
		t.Fatalf("a: %v, %v", held, err)
	}
	select {
	case <-held.Lost():
		t.Fatalf("a lost its lease while renewing it: %v", held.Err())
	case <-time.After(time.Second): // a few renewals
	}
	b := &Lease{DB: db, Name: "warehouse", Node: "b", TTL: 300 * time.Millisecond}
	if hb, err := b.TryHold(ctx); err != nil || hb != nil {
		t.Fatalf("b took a lease a was renewing: %v, %v", hb, err)
	}
	expire(t, db, "warehouse") // a's process stalls past its TTL
	hb, err := b.TryHold(ctx)
	if err != nil || hb == nil {
		t.Fatalf("b after a's lease expired: %v, %v", hb, err)
	}
	<-held.Lost()
	if !errors.Is(held.Err(), ErrLost) {
		t.Fatalf("a lost its lease for %v; want ErrLost", held.Err())
	}
	if hb.Token <= held.Token {
		t.Fatalf("b's token %d is not past a's %d", hb.Token, held.Token)
	}
	h, err := CurrentHolder(ctx, db, "warehouse")
	if err != nil || h.Node != "b" {
		t.Fatalf("holder %+v, %v; want b", h, err)
	}
}

// A holder that cannot reach PostgreSQL steps down by its own clock:
// whether PostgreSQL is gone (connections refused) or hangs (connections
// open, nothing answers).
func TestHeldLeaseIsLostWithoutPostgres(t *testing.T) {
	for _, tt := range []struct {
		name string
		fail func(*pgtest.Server) error
	}{
		{"stopped", func(pg *pgtest.Server) error { pg.Stop(); return nil }},
		{"hung", (*pgtest.Server).Pause},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pg := pgtest.Start(t)
			ctx := context.Background()
			db, err := pgxpool.New(ctx, pg.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := Migrate(ctx, db); err != nil {
				t.Fatal(err)
			}
			a := &Lease{DB: db, Name: "warehouse", Node: "a", TTL: 500 * time.Millisecond}
			held, err := a.TryHold(ctx)
			if err != nil || held == nil {
				t.Fatalf("a: %v, %v", held, err)
			}
			start := time.Now()
			if err := tt.fail(pg); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = pg.Resume() }() // before the pool closes its connections
			<-held.Lost()
			if !errors.Is(held.Err(), ErrLost) {
				t.Fatalf("lost for %v; want ErrLost", held.Err())
			}
			if waited := time.Since(start); waited > 2*a.TTL {
				t.Fatalf("stepped down %s after PostgreSQL failed; the lease was %s", waited, a.TTL)
			}
		})
	}
}

// The shard count is fixed by the first node; a node counting otherwise
// is refused, since it would look for partners in the wrong warehouse.
func TestShardCountIsTheFirstNodes(t *testing.T) {
	db := testDB(t)
	ctx := context.Background()
	if err := Shards(ctx, db, 3); err != nil {
		t.Fatal(err)
	}
	if err := Shards(ctx, db, 3); err != nil {
		t.Fatalf("a second node with the same count: %v", err)
	}
	if err := Shards(ctx, db, 4); err == nil || !strings.Contains(err.Error(), "has 3 shards") {
		t.Fatalf("a node with another count: %v", err)
	}
}

// Placement spreads partners over every shard and never moves one.
func TestShardOfSpreadsAndStays(t *testing.T) {
	counts := make([]int, 4)
	for i := range 1000 {
		id := fmt.Sprintf("fi%d", i)
		s := ShardOf(id, 4)
		if s != ShardOf(id, 4) {
			t.Fatalf("%s moved", id)
		}
		counts[s]++
	}
	for s, n := range counts {
		if n < 200 || n > 300 {
			t.Errorf("shard %d holds %d of 1000 partners: %v", s, n, counts)
		}
	}
}
