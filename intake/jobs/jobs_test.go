package jobs

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flatfiler/flatfiler/intake/inbox"
	"github.com/flatfiler/flatfiler/pipeline"
	"github.com/flatfiler/flatfiler/warehouse"
)

// rig is a manager over a real inbox and a real warehouse file.
type rig struct {
	t     *testing.T
	dir   string
	inbox *inbox.Inbox
	store *warehouse.Store
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	ib, err := inbox.Open(filepath.Join(dir, "sftp"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := warehouse.Open(context.Background(), filepath.Join(dir, "w.duckdb"), warehouse.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close(); ib.Close() })
	return &rig{t: t, dir: dir, inbox: ib, store: store}
}

func (r *rig) open(retention time.Duration, metrics ...*Metrics) *Manager {
	r.t.Helper()
	return r.openWith(retention, func(cfg *Config) {
		if len(metrics) > 0 {
			cfg.Metrics = metrics[0]
		}
	})
}

// openWith opens a manager with the rig's configuration, changed.
func (r *rig) openWith(retention time.Duration, change func(*Config)) *Manager {
	r.t.Helper()
	cfg := Config{
		Dir: filepath.Join(r.dir, "jobs"), Retention: retention, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Box:      func(p string) (*inbox.Box, error) { return r.inbox.Box(p, inbox.Limits{}) },
		Pipeline: &pipeline.Pipeline{Store: r.store, Metrics: pipeline.NewMetrics(prometheus.NewRegistry())},
	}
	change(&cfg)
	m, err := Open(context.Background(), cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	return m
}

func (r *rig) put(name string) string {
	r.t.Helper()
	data, err := os.ReadFile(filepath.Join("../../fixtures/spec", name))
	if err != nil {
		r.t.Fatal(err)
	}
	box, _ := r.inbox.Box("demo", inbox.Limits{})
	u, err := box.Create(name)
	if err != nil {
		r.t.Fatal(err)
	}
	u.WriteAt(data, 0)
	if err := u.Close(); err != nil {
		r.t.Fatal(err)
	}
	sum := md5.Sum(data)
	return hex.EncodeToString(sum[:])
}

func (r *rig) ingests() int {
	var n int
	if err := r.store.DB().QueryRow("SELECT count(*) FROM ingests").Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n
}

// runUntilIdle runs the workers until no job is queued or processing.
func runUntilIdle(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	deadline := time.Now().Add(time.Minute)
	for {
		c, _ := m.counts(time.Now())
		if c[Queued] == 0 && c[Processing] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("jobs did not finish")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}

// A job whose file committed just before the process died is finished from
// the warehouse's audit row, not run again.
func TestJobCommittedBeforeACrashIsNotRunAgain(t *testing.T) {
	r := newRig(t)
	m := r.open(0)
	sum := r.put("combined.xml")
	jobs, _, err := m.Accept(context.Background(), "demo", []File{{Name: "combined.xml", MD5: sum}})
	if err != nil {
		t.Fatal(err)
	}
	runUntilIdle(t, m)
	done, _ := m.Get("demo", jobs[0].ID)

	// Put the disk back as a crash between the commit and the job's own
	// record would have left it: the record says processing, the file is
	// still in the spool.
	path := filepath.Join(r.dir, "jobs", "notifications", jobs[0].NotificationID+".json")
	var n notification
	data, _ := os.ReadFile(path)
	json.Unmarshal(data, &n)
	n.Jobs[0].Status, n.Jobs[0].FinishedAt = Processing, nil
	data, _ = json.Marshal(n)
	os.WriteFile(path, data, 0o600)
	archived, _ := filepath.Glob(filepath.Join(r.dir, "jobs", "archive", "demo", "*", "*"))
	os.Rename(archived[0], filepath.Join(r.dir, "jobs", "spool", jobs[0].ID))

	m = r.open(0)
	got, _ := m.Get("demo", jobs[0].ID)
	if got.Status != done.Status || got.Totals != done.Totals || got.ErrorCount != done.ErrorCount || got.Attempts != 1 {
		t.Errorf("settled job = %+v\nwant as run: %+v", got, done)
	}
	runUntilIdle(t, m)
	if n := r.ingests(); n != 1 {
		t.Errorf("ingests = %d: the job ran again", n)
	}
	if spooled, _ := os.ReadDir(filepath.Join(r.dir, "jobs", "spool")); len(spooled) != 0 {
		t.Errorf("settled job's file left in the spool: %v", spooled)
	}
}

// A notification cut off while its files were moving was never answered:
// the next start puts its files back and forgets it.
func TestUnansweredNotificationIsRolledBack(t *testing.T) {
	r := newRig(t)
	m := r.open(0)
	sum := r.put("users.xml")
	box, _ := r.inbox.Box("demo", inbox.Limits{})
	// Simulate the crash: the record written as accepting, the file moved.
	n := &notification{ID: newID(), Partner: "demo", State: accepting, Key: "k", CreatedAt: time.Now()}
	n.Jobs = []*Job{{ID: newID(), Partner: "demo", Filename: "users.xml", MD5: sum, Status: Queued}}
	if err := m.persist(n); err != nil {
		t.Fatal(err)
	}
	if _, err := box.Take("users.xml", m.spoolPath(n.Jobs[0])); err != nil {
		t.Fatal(err)
	}

	m = r.open(0)
	if got, err := box.Sums("users.xml"); err != nil || got.MD5 != sum {
		t.Errorf("file not back in the inbox: %v %v", got, err)
	}
	if len(m.List("demo", 0)) != 0 {
		t.Error("the unanswered notification's job exists")
	}
	// The partner notifies again, and it works.
	if _, _, err := m.Accept(context.Background(), "demo", []File{{Name: "users.xml", MD5: sum}}); err != nil {
		t.Errorf("notifying again: %v", err)
	}
}

func TestRefusedNotificationMovesNothing(t *testing.T) {
	r := newRig(t)
	m := r.open(0)
	good := r.put("users.xml")
	r.put("accounts.xml")
	_, _, err := m.Accept(context.Background(), "demo", []File{{Name: "users.xml", MD5: good}, {Name: "accounts.xml", MD5: good}})
	var rejected *RejectedError
	if !errors.As(err, &rejected) || len(rejected.Problems) != 1 || rejected.Problems[0].Filename != "accounts.xml" || rejected.Problems[0].Actual == "" {
		t.Fatalf("accept = %v", err)
	}
	box, _ := r.inbox.Box("demo", inbox.Limits{})
	if files, _ := box.List(); len(files) != 2 {
		t.Errorf("inbox holds %d files after a refusal, want 2", len(files))
	}
	if entries, _ := os.ReadDir(filepath.Join(r.dir, "jobs", "notifications")); len(entries) != 0 {
		t.Errorf("a refused notification was recorded: %v", entries)
	}
}

func TestRetentionSweepsFinishedJobsAndArchive(t *testing.T) {
	r := newRig(t)
	m := r.open(time.Nanosecond)
	sum := r.put("users.xml")
	if _, _, err := m.Accept(context.Background(), "demo", []File{{Name: "users.xml", MD5: sum}}); err != nil {
		t.Fatal(err)
	}
	runUntilIdle(t, m)
	m.sweep()
	if got := m.List("demo", 0); len(got) != 0 {
		t.Errorf("jobs past retention: %d", len(got))
	}
	archived, _ := filepath.Glob(filepath.Join(r.dir, "jobs", "archive", "demo", "*", "*"))
	if len(archived) != 0 {
		t.Errorf("archive past retention: %v", archived)
	}
}

// A finished batch past the retention stays while its content is to be
// built or its callback is pending; once delivered, it goes with its
// content file.
func TestRetentionKeepsBatchesUntilDelivered(t *testing.T) {
	r := newRig(t)
	m := r.open(time.Nanosecond)
	body, err := os.ReadFile("../../parse/testdata/batches/spec-sample.json")
	if err != nil {
		t.Fatal(err)
	}
	incoming := filepath.Join(r.dir, "incoming.json")
	if err := os.WriteFile(incoming, body, 0o600); err != nil {
		t.Fatal(err)
	}
	j, _, err := m.AcceptBatch(context.Background(), "demo", incoming, int64(len(body)), "", BatchInfo{Callback: "https://example.com/cb", Records: 3})
	if err != nil {
		t.Fatal(err)
	}
	runUntilIdle(t, m)
	kept := func(want bool, when string) {
		t.Helper()
		m.sweep()
		if _, ok := m.GetBatch("demo", j.ID); ok != want {
			t.Fatalf("%s: batch kept %v, want %v", when, ok, want)
		}
	}
	kept(true, "content not built")
	content := filepath.Join(r.dir, "content.json")
	if err := os.WriteFile(content, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := m.UpdateBatch(j.ID, func(b *BatchInfo) {
		b.Content = &BatchContent{Path: content, At: now}
		b.Delivery = &Delivery{State: DeliveryPending, NextAttemptAt: &now}
	}); err != nil {
		t.Fatal(err)
	}
	kept(true, "callback pending")
	if err := m.UpdateBatch(j.ID, func(b *BatchInfo) { b.Delivery.State = DeliveryDelivered }); err != nil {
		t.Fatal(err)
	}
	kept(false, "delivered")
	if _, err := os.Stat(content); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("content after the sweep: %v", err)
	}
}

// acceptBatch queues a batch body for partner demo.
func (r *rig) acceptBatch(m *Manager, body string) Job {
	r.t.Helper()
	f, err := m.Incoming()
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := f.WriteString(body); err != nil {
		r.t.Fatal(err)
	}
	f.Close()
	j, _, err := m.AcceptBatch(context.Background(), "demo", f.Name(), int64(len(body)), "", BatchInfo{Records: 3})
	if err != nil {
		r.t.Fatal(err)
	}
	return j
}

func userBatch(user string) string {
	return `{"users": [{"partner_customer_id": "` + user + `", "first_name": "A", "last_name": "B", "email": "a@example.com",
"accounts": [{"reference_id": "acct-` + user + `", "name": "Checking", "account_type": "checking",
  "account_balances": [{"balance_type": "current", "balance_amount": "10.00"}],
  "transactions": [{"reference_id": "t1", "balance": "-1.00", "posted_at": "2026-11-02", "memo": "COFFEE"}]}]}]}`
}

// A partner's queued batches apply in one commit; when one of them cannot
// be applied, the others still are, each on its own, and the broken one
// says why.
func TestQueuedBatchesApplyTogether(t *testing.T) {
	r := newRig(t)
	m := r.open(time.Hour)
	var ids []string
	for _, u := range []string{"u1", "u2", "u3"} {
		ids = append(ids, r.acceptBatch(m, userBatch(u)).ID)
	}
	runUntilIdle(t, m)
	var loads, rows int
	if err := r.store.DB().QueryRow("SELECT count(DISTINCT started_at), count(*) FROM ingests").Scan(&loads, &rows); err != nil {
		t.Fatal(err)
	}
	if loads != 1 || rows != 3 {
		t.Errorf("%d audit rows from %d loads, want 3 from 1", rows, loads)
	}
	for _, id := range ids {
		if j, _ := m.GetBatch("demo", id); j.Status != Success {
			t.Errorf("batch %s: %s %s %v, want success", id, j.Status, j.Message, j.Errors)
		}
	}

	broken := r.acceptBatch(m, `{"users": [{"partner_customer_id": "u5", "accounts": [}]}`)
	good := []Job{r.acceptBatch(m, userBatch("u4")), r.acceptBatch(m, userBatch("u6"))}
	runUntilIdle(t, m)
	if j, _ := m.GetBatch("demo", broken.ID); j.Status != Error || !strings.Contains(j.Message, "closes") {
		t.Errorf("broken batch: %s %q, want error naming what is wrong", j.Status, j.Message)
	}
	for _, g := range good {
		if j, _ := m.GetBatch("demo", g.ID); j.Status != Success {
			t.Errorf("batch queued with a broken one: %s %s, want success", j.Status, j.Message)
		}
	}
	if n := r.ingests(); n != 5 {
		t.Errorf("%d audit rows, want 5 (the broken batch applies nothing)", n)
	}
}

// TestOldestQueuedJobMetric: the age of the oldest job waiting grows while
// no worker runs, and is 0 once the queue is empty.
func TestOldestQueuedJobMetric(t *testing.T) {
	r := newRig(t)
	reg := prometheus.NewRegistry()
	m := r.open(time.Hour, NewMetrics(reg))
	oldest := func() float64 {
		t.Helper()
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == "flatfiler_job_oldest_queued_seconds" {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no flatfiler_job_oldest_queued_seconds")
		return 0
	}
	if got := oldest(); got != 0 {
		t.Errorf("no job: %v", got)
	}
	sum := r.put("users.xml")
	if _, _, err := m.Accept(context.Background(), "demo", []File{{Name: "users.xml", MD5: sum}}); err != nil {
		t.Fatal(err)
	}
	first := oldest()
	if first <= 0 {
		t.Errorf("a job queued: %v", first)
	}
	if second := oldest(); second <= first {
		t.Errorf("the wait did not grow: %v then %v", first, second)
	}
	runUntilIdle(t, m)
	if got := oldest(); got != 0 {
		t.Errorf("the queue empty: %v", got)
	}
}
