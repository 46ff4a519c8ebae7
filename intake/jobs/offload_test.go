package jobs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/flatfiler/flatfiler/internal/objstore"
	"github.com/flatfiler/flatfiler/internal/objstore/s3test"
)

// A processed flat file leaves the disk for object storage; while the
// store is down it stays in the archive folder and goes once the store is
// back; the store's copies expire with the retention.
func TestArchivedFilesGoToObjectStorage(t *testing.T) {
	ctx := context.Background()
	fake := s3test.Start(t, "files")
	store, err := objstore.Open(ctx, fake.Location)
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t)
	metrics := NewMetrics(prometheus.NewRegistry())
	m := r.openWith(30*24*time.Hour, func(c *Config) { c.Offload, c.Metrics = store, metrics })
	sum := r.put("combined.xml")
	_, _, err = m.Accept(ctx, "demo", []File{{Name: "combined.xml", MD5: sum}})
	if err != nil {
		t.Fatal(err)
	}
	fake.Down(true)
	runUntilIdle(t, m)
	m.offload(ctx)
	local, _ := filepath.Glob(filepath.Join(r.dir, "jobs", "archive", "demo", "*", "*"))
	if len(local) != 1 || testutil.ToFloat64(metrics.Offloads.WithLabelValues("failed")) == 0 {
		t.Fatalf("with the store down: archived on disk %v, failures %v; want the file kept", local, testutil.ToFloat64(metrics.Offloads.WithLabelValues("failed")))
	}

	fake.Down(false)
	m.offload(ctx)
	if left, _ := filepath.Glob(filepath.Join(r.dir, "jobs", "archive", "demo", "*", "*")); len(left) != 0 {
		t.Errorf("left on disk after the offload: %v", left)
	}
	key, _ := filepath.Rel(filepath.Join(r.dir, "jobs", "archive"), local[0])
	want, _ := os.ReadFile(filepath.Join("../../fixtures/spec", "combined.xml"))
	if size, ok, err := store.Size(ctx, key); err != nil || !ok || size != int64(len(want)) {
		t.Fatalf("stored %s: %d bytes, %v, %v; want %d", key, size, ok, err, len(want))
	}
	if got := testutil.ToFloat64(metrics.Offloads.WithLabelValues("ok")); got != 1 {
		t.Errorf("offloads ok: %v", got)
	}

	// Past the retention, the sweep expires the stored copy.
	m.sweep()
	if _, ok, _ := store.Size(ctx, key); !ok {
		t.Fatal("a file within the retention was expired")
	}
	m.cfg.Retention = time.Nanosecond
	m.sweep()
	if _, ok, _ := store.Size(ctx, key); ok {
		t.Error("a file past the retention was kept")
	}
}
