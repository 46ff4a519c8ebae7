package warehouse_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duckdb/duckdb-go/v2"

	"github.com/flatfiler/flatfiler/api"
	"github.com/flatfiler/flatfiler/intake/partner"
	"github.com/flatfiler/flatfiler/pipeline"
	"github.com/flatfiler/flatfiler/warehouse"
	"github.com/prometheus/client_golang/prometheus"
)

// A load holds the enrichment results its rows number until commit, or
// stages them with a batch once many pile up (so they do not grow with the
// file): both give the same warehouse.
func TestEnrichmentsStagedWithBatchesOrAtCommit(t *testing.T) {
	ingest := func(every int) string {
		t.Helper()
		defer warehouse.SetStageEnrichmentsEvery(every)()
		ctx := context.Background()
		store, err := warehouse.Open(ctx, filepath.Join(t.TempDir(), "w.duckdb"), warehouse.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		engine, err := pipeline.LoadEnrichment(ctx, store, nil)
		if err != nil {
			t.Fatal(err)
		}
		p := &pipeline.Pipeline{Store: store, Metrics: pipeline.NewMetrics(prometheus.NewRegistry()), Enrich: engine}
		f, err := os.Open("../fixtures/spec/combined.xml")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := p.Ingest(ctx, "combined.xml", f, pipeline.Options{Partner: "demo", BatchRows: 2}); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := store.Query(ctx, `SELECT account_id, transaction_id, nickname, tag, tag_reason, merchant_key
			FROM enriched_transactions ORDER BY ALL`, "csv", &out); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := store.DB().QueryRow("SELECT count(*) FROM transactions WHERE enrichment_id IS NULL").Scan(&n); err != nil || n != 0 {
			t.Errorf("%d transactions without enrichment (%v)", n, err)
		}
		// The staged batches' views live in the load's own database, never
		// in the warehouse.
		if err := store.DB().QueryRow("SELECT count(*) FROM duckdb_views() WHERE view_name LIKE 'arrow%'").Scan(&n); err != nil || n != 0 {
			t.Errorf("%d arrow views left after the load (%v)", n, err)
		}
		return out.String()
	}
	atCommit, withBatches := ingest(1<<15), ingest(1)
	if atCommit != withBatches {
		t.Errorf("staged at commit:\n%s\nstaged with batches:\n%s", atCommit, withBatches)
	}
}

// A commit that runs out of DuckDB's memory runs again once, alone: it
// waits for the reads under way and the file lands whole. Other errors are
// not retried.
func TestCommitRetriesAloneAfterOutOfMemory(t *testing.T) {
	for _, c := range []struct {
		name    string
		failure error
		applied bool
		retries int64
	}{
		{"out of memory", &duckdb.Error{Type: duckdb.ErrorTypeOutOfMemory, Msg: "Out of Memory Error: test"}, true, 1},
		{"other error", &duckdb.Error{Type: duckdb.ErrorTypeIO, Msg: "IO Error: test"}, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			store, err := warehouse.Open(ctx, filepath.Join(t.TempDir(), "w.duckdb"), warehouse.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			var failed atomic.Bool
			warehouse.SetFault(store, func(stmt string) error {
				if strings.HasPrefix(strings.TrimSpace(stmt), "INSERT INTO transactions") && failed.CompareAndSwap(false, true) {
					return c.failure
				}
				return nil
			})
			p := &pipeline.Pipeline{Store: store, Metrics: pipeline.NewMetrics(prometheus.NewRegistry())}
			doneReading := store.Reading()
			finished := make(chan error, 1)
			go func() {
				f, err := os.Open("../fixtures/spec/combined.xml")
				if err != nil {
					finished <- err
					return
				}
				defer f.Close()
				_, err = p.Ingest(ctx, "combined.xml", f, pipeline.Options{Partner: "demo"})
				finished <- err
			}()
			if c.applied {
				select {
				case err := <-finished:
					t.Fatalf("the retry did not wait for the read under way (ingest returned %v)", err)
				case <-time.After(300 * time.Millisecond):
				}
			}
			doneReading()
			err = <-finished
			if !failed.Load() {
				t.Fatal("the fault never struck: the test proves nothing")
			}
			if c.applied && err != nil {
				t.Fatalf("ingest after the retry: %v", err)
			}
			if !c.applied && err == nil {
				t.Fatal("ingest succeeded although its commit failed")
			}
			var txns, ingests int
			if err := store.DB().QueryRow("SELECT (SELECT count(*) FROM transactions), (SELECT count(*) FROM ingests)").Scan(&txns, &ingests); err != nil {
				t.Fatal(err)
			}
			if got := txns > 0 && ingests == 1; got != c.applied {
				t.Errorf("%d transactions and %d ingests rows; applied %v, want %v", txns, ingests, got, c.applied)
			}
			if got := store.CommitRetries(); got != c.retries {
				t.Errorf("%d commit retries, want %d", got, c.retries)
			}
		})
	}
}

// A write through the API (a PUT of a transaction) that arrives while a
// commit runs, before that commit runs out of memory and runs again alone:
// the retry waits for the reads under way, and the PUT waits for the
// commit's write lock. Were the PUT counted as a read, each would wait for
// the other for ever.
func TestWriteDuringRetriedCommit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := warehouse.Open(ctx, filepath.Join(dir, "w.duckdb"), warehouse.Options{AccountDirectory: true})
	if err != nil {
		t.Fatal(err)
	}
	// Closing the server or the store waits for their calls: not if two
	// of them are stuck on each other.
	stuck := false
	defer func() {
		if !stuck {
			store.Close()
		}
	}()
	p := &pipeline.Pipeline{Store: store, Metrics: pipeline.NewMetrics(prometheus.NewRegistry())}
	const spec = "../fixtures/spec/combined.xml"
	if _, err := p.IngestFile(ctx, spec, pipeline.Options{Partner: "demo"}); err != nil {
		t.Fatal(err)
	}
	reg, err := partner.Open(filepath.Join(dir, "partners"))
	if err != nil {
		t.Fatal(err)
	}
	const key = "demo-api-key-0123456789abcdef"
	if _, err := reg.Add("demo", partner.NewOptions{APIKey: key}); err != nil {
		t.Fatal(err)
	}
	srv := &api.Server{Partners: reg, Store: store, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	hs := httptest.NewServer(srv.Handler())
	defer func() {
		if !stuck {
			hs.Close()
		}
	}()

	// The second ingest's commit stops at its copy of transactions until
	// the PUT is under way, then fails there for memory once.
	committing, release := make(chan struct{}), make(chan struct{})
	var struck atomic.Bool
	warehouse.SetFault(store, func(stmt string) error {
		if strings.HasPrefix(strings.TrimSpace(stmt), "INSERT INTO transactions") && struck.CompareAndSwap(false, true) {
			close(committing)
			<-release
			return &duckdb.Error{Type: duckdb.ErrorTypeOutOfMemory, Msg: "Out of Memory Error: test"}
		}
		return nil
	})
	ingested := make(chan error, 1)
	go func() {
		_, err := p.IngestFile(ctx, spec, pipeline.Options{Partner: "demo"})
		ingested <- err
	}()
	<-committing
	put := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPut, hs.URL+"/api/v2/users/322079353/transactions/83",
			strings.NewReader(`{"transaction": {"nickname": "Mine"}}`))
		req.SetBasicAuth(key, "")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				err = fmt.Errorf("PUT: status %d", resp.StatusCode)
			}
		}
		put <- err
	}()
	// Let the PUT reach the store's write lock, which the commit holds.
	time.Sleep(200 * time.Millisecond)
	close(release)
	deadline := time.After(20 * time.Second)
	for range 2 {
		select {
		case err := <-ingested:
			if err != nil {
				t.Errorf("ingest after the retry: %v", err)
			}
		case err := <-put:
			if err != nil {
				t.Error(err)
			}
		case <-deadline:
			stuck = true
			t.Fatal("the retried commit and the PUT wait for each other")
		}
	}
	if store.CommitRetries() != 1 {
		t.Errorf("%d commit retries, want 1", store.CommitRetries())
	}
	var nickname string
	if err := store.DB().QueryRow("SELECT nickname FROM transaction_edits WHERE transaction_id = '83'").Scan(&nickname); err != nil || nickname != "Mine" {
		t.Errorf("the PUT's edit: %q, %v", nickname, err)
	}
}

// A commit runs under CommitMemoryLimit, and the usual limit is back once
// it ends, whether it landed or failed.
func TestCommitMemoryLimit(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("failed=%v", fail), func(t *testing.T) {
			ctx := context.Background()
			store, err := warehouse.Open(ctx, filepath.Join(t.TempDir(), "w.duckdb"),
				warehouse.Options{MemoryLimit: "100MB", CommitMemoryLimit: "300MB"})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			limit := func() string {
				var v string
				if err := store.DB().QueryRow("SELECT current_setting('memory_limit')").Scan(&v); err != nil {
					t.Fatal(err)
				}
				return v
			}
			usual := limit()
			var during string
			warehouse.SetFault(store, func(stmt string) error {
				if strings.HasPrefix(strings.TrimSpace(stmt), "INSERT INTO transactions") && during == "" {
					during = limit()
					if fail {
						return &duckdb.Error{Type: duckdb.ErrorTypeIO, Msg: "IO Error: test"}
					}
				}
				return nil
			})
			f, err := os.Open("../fixtures/spec/combined.xml")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			p := &pipeline.Pipeline{Store: store, Metrics: pipeline.NewMetrics(prometheus.NewRegistry())}
			if _, err := p.Ingest(ctx, "combined.xml", f, pipeline.Options{Partner: "demo"}); (err != nil) != fail {
				t.Fatalf("ingest: %v", err)
			}
			if during == "" {
				t.Fatal("the commit never inserted transactions: the test proves nothing")
			}
			if during == usual || !strings.HasPrefix(during, "286") { // DuckDB shows 300 MB as 286.1 MiB
				t.Errorf("memory limit during the commit %q, usually %q", during, usual)
			}
			if after := limit(); after != usual {
				t.Errorf("memory limit after the commit %q, want %q back", after, usual)
			}
		})
	}
}
