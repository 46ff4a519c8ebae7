package cluster

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The forwarder sends a request to the holder of the lease the request is
// for, unchanged; with no holder, or only itself, it answers 503 with
// Retry-After, in the API's error shape.
func TestForwarderFollowsTheLease(t *testing.T) {
	db := testDB(t)
	ctx := context.Background()
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(body)+" from "+r.Header.Get("X-Forwarded-For"))
	}))
	defer leader.Close()
	lease := &Lease{DB: db, Name: "shard/s1", Node: "a", TTL: time.Minute}
	token, _, err := lease.TryAcquire(ctx)
	if err != nil || token == 0 {
		t.Fatalf("acquire: %d %v", token, err)
	}
	if err := lease.Advertise(ctx, token, strings.TrimPrefix(leader.URL, "http://"), ""); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	forward := func(self string) *httptest.Server {
		dir := &Directory{DB: db, Self: self, MaxAge: time.Nanosecond}
		srv := httptest.NewServer(Forwarder(dir, func(*http.Request) string { return "shard/s1" }, log))
		t.Cleanup(srv.Close)
		return srv
	}
	follower := forward("b")
	resp, err := http.Post(follower.URL+"/api/v2/batches?x=1", "application/json", strings.NewReader(`{"users":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(got), `POST /api/v2/batches?x=1 {"users":[]} from 127.0.0.1`) {
		t.Errorf("forwarded: %d %s", resp.StatusCode, got)
	}

	for _, tt := range []struct {
		name string
		srv  *httptest.Server
		prep func()
	}{
		{"the holder itself", forward("a"), func() {}},
		{"no holder", follower, func() {
			if err := lease.Release(ctx, token); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		tt.prep()
		resp, err := http.Get(tt.srv.URL + "/api/v2/uploads")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(body), `"message": "no node holds`) {
			t.Errorf("%s: %d %q %s; want 503, Retry-After 1, the reason", tt.name, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
}
