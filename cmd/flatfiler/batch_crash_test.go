package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flatfiler/flatfiler/fixtures/gen"
	"github.com/flatfiler/flatfiler/internal/failpoint"
)

// crashBatch is a generated push batch (a few hundred transactions, some
// invalid, nicknames and hidden ones) and what one clean application of
// it gives.
type crashBatch struct {
	body []byte
	want string // fingerprint of `flatfiler ingest` of the same batch
}

func newCrashBatch(t *testing.T, callback string) crashBatch {
	t.Helper()
	var buf bytes.Buffer
	if _, err := gen.Write(&buf, gen.Options{Users: 12, Seed: 5, BadRate: 0.01, Batch: true, Callback: callback}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "batch.json")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	clean := filepath.Join(t.TempDir(), "clean.duckdb")
	if code, _, errOut := runCLI(t, "ingest", "--db", clean, "--partner", "demo", path); code != 0 {
		t.Fatalf("clean ingest of the batch: exit %d %s", code, errOut)
	}
	return crashBatch{body: buf.Bytes(), want: fingerprint(t, clean)}
}

// callbackFlags point a child's callbacks at the receiver, retried fast.
func callbackFlags(r *callbackReceiver) []string {
	return []string{"--shutdown-grace", "0s", "--callback-ca", r.caFile, "--callback-allow-private",
		"--callback-schedule", "10ms,20ms,40ms,80ms,160ms"}
}

// TestPushBatchCrashAtEveryPoint kills a real server (SIGKILL, from inside)
// at every point from "batch recorded, not answered" to "archived",
// restarts it, and PUTs the same batch again with the same Idempotency-Key,
// as a partner that got no answer, or got one and is unsure, would. The
// batch keeps its id, is applied exactly once, and its callback arrives.
func TestPushBatchCrashAtEveryPoint(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	recv := newCallbackReceiver(t, 0)
	batch := newCrashBatch(t, recv.URL+"/cb")
	points := []string{failpoint.NotifyAccepted, failpoint.JobClaimed, failpoint.LoadStaged, failpoint.LoadBeforeCommit,
		failpoint.LoadCommitted, failpoint.JobIngested, failpoint.JobRecorded, failpoint.JobArchiving}
	ran := 0
	defer func() {
		recv.mu.Lock()
		defer recv.mu.Unlock()
		if len(recv.got) != ran {
			t.Errorf("%d callbacks taken for %d batches, want one each", len(recv.got), ran)
		}
	}()
	for _, point := range points {
		t.Run(point, func(t *testing.T) {
			ran++
			dir := t.TempDir()
			first := startChildEnv(t, dir, []string{faultsEnv + "=" + point + "=crash"}, callbackFlags(recv)...)
			creds := *first.creds
			key := "crash-" + strings.ReplaceAll(point, "/", "-")
			answer, putErr := first.client(t, creds).tryPutBatch(batch.body, creds.APIKey, "Idempotency-Key", key)
			if !waitExit(t, first, time.Minute) || !strings.Contains(first.stderr.String(), "failpoint "+point+": crash") {
				t.Fatalf("server did not die by SIGKILL at %s:\n%s", point, first.stderr.String())
			}
			var firstID string
			switch {
			case putErr == nil && answer.Status == http.StatusOK:
				firstID, _ = answer.Body["batch_id"].(string)
			case putErr == nil:
				t.Fatalf("PUT before the crash: %d %s", answer.Status, answer.Raw)
			case point != failpoint.NotifyAccepted && point != failpoint.JobClaimed:
				// The job runs after the answer is written; only the first
				// points can come before it.
				t.Fatalf("no answer before a crash at %s: %v", point, putErr)
			}

			second := startChild(t, dir, callbackFlags(recv)...)
			ts := second.client(t, creds)
			again := ts.putBatch(batch.body, creds.APIKey, "Idempotency-Key", key)
			id, _ := again.Body["batch_id"].(string)
			if again.Status != http.StatusOK || id == "" || firstID != "" && id != firstID {
				t.Fatalf("PUT again after the restart: %d %s, want 200 with batch_id %q", again.Status, again.Raw, firstID)
			}
			if st := ts.waitBatch(creds.APIKey, id); st["status"] != "partial-success" {
				t.Errorf("batch after restart: %v", st)
			}
			cb := recv.wait(t)
			if got := cb.header.Get("webhook-id"); got != id {
				t.Errorf("callback for %q, want batch %s", got, id)
			}
			checkSettled(t, dir, second, batch.want, 1)
		})
	}
}

// TestPushBatchCallbackSurvivesCrashes kills the server while a callback
// is being retried, and right after a receiver took it but before that was
// recorded. The first is delivered once it can be, its attempts counted
// across the restart; the second is delivered again with the same
// webhook-id and body, which is how a receiver knows it has it already.
func TestPushBatchCallbackSurvivesCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	for _, tt := range []struct {
		name       string
		failures   int    // the receiver's 503s before it takes the callback
		crash      string // the failpoint action at callback/answered
		deliveries int
		attempts   float64 // recorded in the status at the end
	}{
		// Attempt 1 refused and recorded, attempt 2 refused and lost in the
		// crash; after the restart attempt 2 is refused, 3 taken.
		{"while retrying", 3, "crash@2", 1, 3},
		{"after a 2xx, before it is recorded", 0, "crash@1", 2, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			recv := newCallbackReceiver(t, tt.failures)
			batch := newCrashBatch(t, recv.URL+"/cb")
			dir := t.TempDir()
			first := startChildEnv(t, dir, []string{faultsEnv + "=" + failpoint.CallbackAnswered + "=" + tt.crash}, callbackFlags(recv)...)
			creds := *first.creds
			a := first.client(t, creds).putBatch(batch.body, creds.APIKey)
			id, _ := a.Body["batch_id"].(string)
			if a.Status != http.StatusOK || id == "" {
				t.Fatalf("PUT: %d %s", a.Status, a.Raw)
			}
			if !waitExit(t, first, time.Minute) || !strings.Contains(first.stderr.String(), "failpoint "+failpoint.CallbackAnswered+": crash") {
				t.Fatalf("server did not die by SIGKILL at %s:\n%s", failpoint.CallbackAnswered, first.stderr.String())
			}

			second := startChild(t, dir, callbackFlags(recv)...)
			ts := second.client(t, creds)
			for range tt.deliveries {
				recv.wait(t)
			}
			var st map[string]any
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				st = ts.waitBatch(creds.APIKey, id)
				if cb, _ := st["callback"].(map[string]any); cb["state"] == "delivered" {
					break
				}
			}
			cb, _ := st["callback"].(map[string]any)
			if cb["state"] != "delivered" || cb["attempts"] != tt.attempts {
				t.Errorf("callback status %v, want delivered after %v attempts", cb, tt.attempts)
			}
			checkSettled(t, dir, second, batch.want, 1)
			recv.mu.Lock()
			defer recv.mu.Unlock()
			if len(recv.got) != tt.deliveries {
				t.Fatalf("%d callbacks taken, want %d", len(recv.got), tt.deliveries)
			}
			for _, got := range recv.got {
				if got.header.Get("webhook-id") != id || !bytes.Equal(got.body, recv.got[0].body) {
					t.Errorf("callback %s, want batch %s with the same body each time", got.header.Get("webhook-id"), id)
				}
			}
		})
	}
}
