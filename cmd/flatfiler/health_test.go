package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHealthAndReadiness: /healthz answers while the process lives;
// /readyz answers 200 with each check when the warehouse, the job workers
// and the data directory are fine, and 503 naming the check that is not:
// here the data directory's free space under --min-free-space. Neither
// needs a key, and neither counts as an API request.
func TestHealthAndReadiness(t *testing.T) {
	for _, tt := range []struct {
		name     string
		minFree  int64
		status   int
		want     string
		failing  string
		failWant string
	}{
		{name: "ready", minFree: 1 << 20, status: http.StatusOK, want: "ready"},
		{name: "disk short", minFree: 1 << 60, status: http.StatusServiceUnavailable, want: "not ready", failing: "data", failWant: "--min-free-space"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ts := startTestServer(t, t.TempDir(), func(c *serveConfig) { c.MinFreeSpace = tt.minFree })
			if a := ts.call("GET", "/healthz", nil, ""); a.Status != http.StatusOK || a.Body["status"] != "ok" {
				t.Errorf("healthz: %d %s", a.Status, a.Raw)
			}
			// The workers start beside the listeners: ready within moments.
			var a apiAnswer
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if a = ts.call("GET", "/readyz", nil, ""); a.Status == tt.status {
					break
				}
			}
			var body struct {
				Status string
				Checks []struct {
					Name  string
					OK    bool
					Error string
				}
			}
			if err := json.Unmarshal([]byte(a.Raw), &body); err != nil || a.Status != tt.status || body.Status != tt.want || len(body.Checks) != 3 {
				t.Fatalf("readyz: %d %s", a.Status, a.Raw)
			}
			for _, c := range body.Checks {
				if fails := c.Name == tt.failing; c.OK == fails || fails && !strings.Contains(c.Error, tt.failWant) {
					t.Errorf("check %s: ok %v, %q", c.Name, c.OK, c.Error)
				}
			}
			if m := ts.call("GET", "/metrics", nil, ""); strings.Contains(m.Raw, `handler="readyz"`) || strings.Contains(m.Raw, `handler="healthz"`) {
				t.Error("probes counted as API requests")
			}
		})
	}
}

// TestLogFormatJSON: with --log-format json every line the server writes
// is one JSON object with time, level and msg.
func TestLogFormatJSON(t *testing.T) {
	c := startChildEnv(t, t.TempDir(), nil, "--log-format", "json")
	c.cmd.Process.Signal(syscall.SIGTERM)
	c.cmd.Wait()
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(c.stderr.String()))
	for sc.Scan() {
		var entry map[string]any
		if err := json.Unmarshal(sc.Bytes(), &entry); err != nil || entry["time"] == nil || entry["level"] == nil || entry["msg"] == nil {
			t.Errorf("not a JSON log entry: %q (%v)", sc.Text(), err)
		}
		lines++
	}
	if lines == 0 {
		t.Error("the server logged nothing")
	}
}
