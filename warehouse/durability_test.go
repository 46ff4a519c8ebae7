package warehouse_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flatfiler/flatfiler/fixtures/gen"
	"github.com/flatfiler/flatfiler/internal/failpoint"
	"github.com/flatfiler/flatfiler/internal/failpoint/smalldisk"
	"github.com/flatfiler/flatfiler/pipeline"
	"github.com/flatfiler/flatfiler/warehouse"
)

// A COMMIT on a full disk fails as a storage error and leaves readers the
// state before the file, at every moment: a reader polling through the
// commit never sees it. Freed, the same file applies once, and a reopen
// finds it. The file is large enough (its changes are over DuckDB's
// default 16 MB checkpoint threshold) that DuckDB would make it visible
// before a checkpoint that then fails, if the warehouse let it
// checkpoint at COMMIT.
func TestCommitOnAFullDiskIsNeverSeen(t *testing.T) {
	dir := smalldisk.Mount(t, 256<<20)
	ballast := filepath.Join(dir, "ballast")
	faults, err := failpoint.Parse(failpoint.LoadBeforeCommit+"=fill("+ballast+")", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	path := filepath.Join(dir, "w.duckdb")
	store, err := warehouse.Open(ctx, path, warehouse.Options{Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { store.Close() }()
	var file bytes.Buffer
	if _, err := gen.Write(&file, gen.Options{Bytes: 48 << 20, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	p := &pipeline.Pipeline{Store: store, Metrics: pipeline.NewMetrics(prometheus.NewRegistry())}

	var seen, reads atomic.Int64
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			var n int64
			done := store.Reading() // as the API's reads do
			err := store.DB().QueryRow("SELECT count(transaction_id) FROM transactions WHERE amount IS NOT NULL").Scan(&n)
			done()
			if err == nil {
				reads.Add(1)
				seen.Store(max(seen.Load(), n))
			}
		}
	}()
	// The disk stays full: each attempt fails at COMMIT, each a chance for
	// the reader to be in the moment that matters.
	for range 3 {
		rep, err := p.Ingest(ctx, "big.xml", bytes.NewReader(file.Bytes()), pipeline.Options{Partner: "demo"})
		if err == nil || !errors.Is(err, warehouse.ErrStorage) || rep.Applied || !rep.Retryable {
			t.Fatalf("ingest on a full disk: err %v, report %+v; want a retryable storage error", err, rep)
		}
	}
	close(stop)
	<-polled
	if reads.Load() == 0 {
		t.Fatal("the reader never read: the test proves nothing")
	}
	if seen.Load() != 0 {
		t.Errorf("a reader saw %d transactions of a file whose COMMIT failed", seen.Load())
	}
	if _, err := os.Stat(ballast); err != nil {
		t.Fatalf("the disk was never filled: %v", err)
	}

	os.Remove(ballast)
	if _, err := p.Ingest(ctx, "big.xml", bytes.NewReader(file.Bytes()), pipeline.Options{Partner: "demo"}); err != nil {
		t.Fatalf("ingest once there is room: %v", err)
	}
	count := func() (txns, ingests int) {
		t.Helper()
		if err := store.DB().QueryRow("SELECT (SELECT count(*) FROM transactions), (SELECT count(*) FROM ingests)").Scan(&txns, &ingests); err != nil {
			t.Fatal(err)
		}
		return
	}
	txns, ingests := count()
	if ingests != 1 || txns == 0 {
		t.Fatalf("after the retry: %d transactions, %d ingests rows", txns, ingests)
	}
	store.Close()
	if store, err = warehouse.Open(ctx, path, warehouse.Options{}); err != nil {
		t.Fatal(err)
	}
	if again, ingests := count(); again != txns || ingests != 1 {
		t.Errorf("reopened: %d transactions and %d ingests rows, want %d and 1", again, ingests, txns)
	}
}

// A spill directory that fills while a file is staged is named, with what
// it holds and its limit, as a storage failure the file is not at fault
// for (DuckDB's own words were "Out of Memory Error"), and once it has
// room the file applies.
func TestFullSpillDirectoryIsNamed(t *testing.T) {
	spill := smalldisk.Mount(t, 8<<20)
	ctx := context.Background()
	store, err := warehouse.Open(ctx, filepath.Join(t.TempDir(), "w.duckdb"), warehouse.Options{TempDir: spill})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var file bytes.Buffer
	if _, err := gen.Write(&file, gen.Options{Bytes: 200 << 20, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	p := &pipeline.Pipeline{Store: store, Metrics: pipeline.NewMetrics(prometheus.NewRegistry())}
	rep, err := p.Ingest(ctx, "big.xml", bytes.NewReader(file.Bytes()), pipeline.Options{Partner: "demo"})
	if err == nil || !errors.Is(err, warehouse.ErrStorage) || !rep.Retryable ||
		!regexp.MustCompile(`spill directory \S+ is full \([0-9.]+ MiB used, limit [0-9.]+ MiB\)`).MatchString(rep.Fatal) {
		t.Fatalf("ingest with a full spill directory: err %v\nreport %s", err, rep.Fatal)
	}
	// Room freed, the same file applies: DuckDB measured its spill limit
	// once, at the first spill, and the load has it measured again.
	smalldisk.Grow(t, spill, 1<<30)
	if rep, err := p.Ingest(ctx, "big.xml", bytes.NewReader(file.Bytes()), pipeline.Options{Partner: "demo"}); err != nil {
		t.Fatalf("ingest once the spill directory has room: %v", rep.Fatal)
	}
}
