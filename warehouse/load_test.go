package warehouse_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/flatfiler/flatfiler/intake"
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
		engine, err := intake.LoadEnrichment(ctx, store, nil)
		if err != nil {
			t.Fatal(err)
		}
		p := &intake.Pipeline{Store: store, Metrics: intake.NewMetrics(prometheus.NewRegistry()), Enrich: engine}
		f, err := os.Open("../fixtures/spec/combined.xml")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := p.Ingest(ctx, "combined.xml", f, intake.Options{Partner: "demo", BatchRows: 2}); err != nil {
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
		return out.String()
	}
	atCommit, withBatches := ingest(1<<15), ingest(1)
	if atCommit != withBatches {
		t.Errorf("staged at commit:\n%s\nstaged with batches:\n%s", atCommit, withBatches)
	}
}
