// Package s3test runs an S3-compatible store for tests: what stands for a
// cloud's object storage, which is outside flatfiler.
package s3test

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// Server is a running fake store.
type Server struct {
	// Location is what objstore.Open takes.
	Location string
	// Clock moves the store's time (objects' last-modified).
	Clock gofakes3.TimeSourceAdvancer
	down  atomic.Bool
}

// Down makes the store answer every request 503 (a fault hook), or serve
// again.
func (s *Server) Down(down bool) { s.down.Store(down) }

// Start serves an S3-compatible store (gofakes3, in memory) on loopback
// for a test, over TLS, with one bucket, and sets the credentials
// objstore.Open reads.
func Start(t testing.TB, bucket string) *Server { return start(t, bucket, true) }

// StartHTTP is Start over plain http (insecure=true), as a store on
// loopback may be run.
func StartHTTP(t testing.TB, bucket string) *Server { return start(t, bucket, false) }

func start(t testing.TB, bucket string, tls bool) *Server {
	t.Helper()
	s := &Server{Clock: gofakes3.FixedTimeSource(time.Now())}
	backend := s3mem.New(s3mem.WithTimeSource(s.Clock))
	if err := backend.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	fake := gofakes3.New(backend, gofakes3.WithTimeSource(s.Clock), gofakes3.WithTimeSkewLimit(0)).Server()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fake.ServeHTTP(w, r)
	})
	t.Setenv("AWS_ACCESS_KEY_ID", "flatfiler")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "flatfiler-secret")
	if !tls {
		srv := httptest.NewServer(handler)
		t.Cleanup(srv.Close)
		s.Location = "s3://" + bucket + "/archive?region=us-east-1&insecure=true&endpoint=" + strings.TrimPrefix(srv.URL, "http://")
		return s
	}
	srv := httptest.NewTLSServer(handler)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Location = "s3://" + bucket + "/archive?region=us-east-1&ca=" + ca + "&endpoint=" + strings.TrimPrefix(srv.URL, "https://")
	return s
}
