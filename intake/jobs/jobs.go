// Package jobs turns upload notifications into durable jobs and runs them
// through the ingest pipeline.
//
// A notification is accepted whole or not at all: every file must be
// published in the partner's inbox with the MD5 the partner names. Accepted
// files are moved out of the inbox into a spool, so nothing the partner
// does afterwards changes what is processed, and the notification is
// written to disk before it is answered. After a crash, a notification
// caught halfway is rolled back (its files go back to the inbox) and a job
// caught processing is looked up in the warehouse: the file's audit row
// carries the job ID and commits with the data, so the job is finished from
// that row or run again, never applied twice.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/flatfiler/flatfiler/intake/inbox"
	"github.com/flatfiler/flatfiler/internal/durable"
	"github.com/flatfiler/flatfiler/internal/failpoint"
	"github.com/flatfiler/flatfiler/parse"
	"github.com/flatfiler/flatfiler/pipeline"
	"github.com/flatfiler/flatfiler/stages"
)

// Job states. The final three are the ingest report's status.
const (
	Queued         = "queued"
	Processing     = "processing"
	Success        = pipeline.StatusSuccess
	PartialSuccess = pipeline.StatusPartialSuccess
	Error          = pipeline.StatusError
)

// States lists every job state, in lifecycle order.
var States = []string{Queued, Processing, Success, PartialSuccess, Error}

// Job is one notified file and what became of it.
type Job struct {
	ID             string `json:"job_id"`
	Partner        string `json:"partner_id"`
	NotificationID string `json:"notification_id"`
	Filename       string `json:"filename"`
	// Source is SourceBatch for a push batch; empty for a notified file.
	Source string     `json:"source,omitempty"`
	Batch  *BatchInfo `json:"batch,omitempty"`
	// Type is what the notification declared, or once run, what the file held.
	Type       string `json:"type,omitempty"`
	MD5        string `json:"md5"`
	SHA256     string `json:"sha256"`
	Status     string `json:"status"`
	BytesTotal int64  `json:"bytes_total"`
	BytesDone  int64  `json:"bytes_done"`
	pipeline.Outcome
	// Message says why a file was not applied at all, or, while the job
	// waits for NextAttemptAt, why its last attempt did not apply it.
	Message  string `json:"message,omitempty"`
	Attempts int    `json:"attempts"`
	// NextAttemptAt is when a job whose last attempt failed for the
	// server's storage (a full disk, an I/O error) runs again.
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	StartedAt     *time.Time `json:"started_at,omitempty"`
	FinishedAt    *time.Time `json:"finished_at,omitempty"`
}

// Final reports whether the job will not change any more.
func (j *Job) Final() bool { return j.Status != Queued && j.Status != Processing }

// File is one file of a notification.
type File struct {
	Name string
	MD5  string         // hex, any case; Accept lowers it
	Type parse.FileType // empty: detected from the file
}

// Problem is why one file of a notification was refused.
type Problem struct {
	Filename string `json:"filename"`
	Field    string `json:"field"`
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
	Message  string `json:"message"`
	// NotFound: the file is not published in the partner's inbox.
	NotFound bool `json:"-"`
}

// RejectedError is a notification refused as a whole; nothing was enqueued.
type RejectedError struct{ Problems []Problem }

func (e *RejectedError) Error() string {
	return "notification rejected: " + Summarize(e.Problems)
}

// summarized is how many problems a message spells out.
const summarized = 3

// Summarize joins the first problems' messages and counts the rest.
func Summarize(problems []Problem) string {
	msgs := make([]string, 0, summarized+1)
	for _, p := range problems[:min(len(problems), summarized)] {
		msgs = append(msgs, p.Message)
	}
	if more := len(problems) - summarized; more > 0 {
		msgs = append(msgs, fmt.Sprintf("and %d more (see data)", more))
	}
	return strings.Join(msgs, "; ")
}

// notification is the unit written to disk: a notification's jobs.
type notification struct {
	ID      string `json:"notification_id"`
	Partner string `json:"partner_id"`
	// State is accepting while files are being moved, accepted after.
	State     string    `json:"state"`
	Key       string    `json:"key"`
	CreatedAt time.Time `json:"created_at"`
	Jobs      []*Job    `json:"jobs"`
	// unsaved: the last write of this record failed (a full disk); it is
	// written again before any job is claimed.
	unsaved bool
}

const (
	accepting = "accepting"
	accepted  = "accepted"
)

// Config wires a Manager.
type Config struct {
	Dir string // notifications, spool and archive live here
	// Box returns a partner's inbox box.
	Box      func(partner string) (*inbox.Box, error)
	Pipeline *pipeline.Pipeline
	// Workers run jobs of different partners at once; one partner's jobs
	// always run one at a time, in order. Default 1: one load already uses
	// both cores and most of the memory budget.
	Workers int
	// ParseWorkers are a job's parser goroutines; default GOMAXPROCS.
	ParseWorkers int
	// Retention keeps archived files and finished jobs; default 30 days.
	Retention time.Duration
	// Grace lets a running job finish at shutdown before it is stopped and
	// queued again; zero stops it at once.
	Grace     time.Duration
	MaxErrors int // errors kept per job; default 100
	// RetryAfter is how long a job whose attempt failed for the server's
	// storage waits before the next; it doubles, with jitter, up to
	// RetryMax. Defaults 10s and 10m.
	RetryAfter, RetryMax time.Duration
	Logger               *slog.Logger
	Metrics              *Metrics
	// Faults are the process's named fault points, for crash tests.
	Faults *failpoint.Set
	// Offload, if set, takes processed flat files off the disk once
	// archived (object storage); Retention then applies there.
	Offload ArchiveStore
	// Finished, if set, is told of each job that became final. It is
	// called with the manager's lock held: it must not block or call back.
	Finished func(Job)
}

// Manager owns the jobs.
type Manager struct {
	cfg Config
	log *slog.Logger
	// running counts the workers of Run working the queue.
	running atomic.Int32

	acceptMu sync.Mutex // one notification at a time: they move files

	mu     sync.Mutex
	notifs map[string]*notification
	jobs   map[string]*Job
	byKey  map[string]*notification
	busy   map[string]bool // partners with a job processing
	wake   chan struct{}

	offloadWake chan struct{}
}

func (m *Manager) notifDir() string   { return filepath.Join(m.cfg.Dir, "notifications") }
func (m *Manager) spoolDir() string   { return filepath.Join(m.cfg.Dir, "spool") }
func (m *Manager) archiveDir() string { return filepath.Join(m.cfg.Dir, "archive") }
func (m *Manager) spoolPath(j *Job) string {
	return filepath.Join(m.spoolDir(), j.ID)
}

// Open loads the jobs in cfg.Dir and recovers from a crash: notifications
// caught accepting are rolled back, jobs caught processing are settled
// against the warehouse.
func Open(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 30 * 24 * time.Hour
	}
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = 100
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 10 * time.Second
	}
	if cfg.RetryMax < cfg.RetryAfter {
		cfg.RetryMax = max(10*time.Minute, cfg.RetryAfter)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	m := &Manager{
		cfg: cfg, log: cfg.Logger,
		notifs: map[string]*notification{}, jobs: map[string]*Job{},
		byKey: map[string]*notification{}, busy: map[string]bool{}, wake: make(chan struct{}, 1), offloadWake: make(chan struct{}, 1),
	}
	for _, d := range []string{m.notifDir(), m.spoolDir(), m.archiveDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("jobs: %w", err)
		}
	}
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	m.removeOrphans()
	cfg.Metrics.manager = m
	return m, nil
}

func (m *Manager) load(ctx context.Context) error {
	entries, err := os.ReadDir(m.notifDir())
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue // a temporary of an interrupted write
		}
		data, err := os.ReadFile(filepath.Join(m.notifDir(), e.Name()))
		if err != nil {
			return fmt.Errorf("jobs: %w", err)
		}
		n := &notification{}
		if err := json.Unmarshal(data, n); err != nil {
			return fmt.Errorf("jobs: %s: %w", e.Name(), err)
		}
		if n.State == accepting {
			m.rollBack(n)
			continue
		}
		for _, j := range n.Jobs {
			switch {
			case j.Status == Processing:
				if err := m.settle(ctx, n, j); err != nil {
					return err
				}
			case j.Final():
				// Recorded final before the process stopped, maybe not
				// archived yet.
				m.archive(j)
			}
			// A start is when an operator has fixed what a retry waited for.
			j.NextAttemptAt = nil
		}
		m.index(n)
	}
	return nil
}

// rollBack undoes a notification that crashed while accepting: it was never
// answered, so its files go back to the inbox for the partner to notify again.
func (m *Manager) rollBack(n *notification) {
	if box, err := m.cfg.Box(n.Partner); err == nil {
		for _, j := range n.Jobs {
			if _, err := os.Stat(m.spoolPath(j)); err == nil {
				if err := box.Restore(inbox.Taken{Name: j.Filename, Path: m.spoolPath(j)}); err != nil {
					m.log.Error("restoring a file of an unanswered notification", "partner", n.Partner, "file", j.Filename, "err", err)
				}
			}
		}
	}
	_ = os.Remove(filepath.Join(m.notifDir(), n.ID+".json"))
	m.log.Warn("notification interrupted before it was answered; files returned to the inbox", "partner", n.Partner, "notification_id", n.ID)
}

// settle decides a job that was processing when the process stopped.
func (m *Manager) settle(ctx context.Context, n *notification, j *Job) error {
	report, found, err := m.cfg.Pipeline.Store.IngestReport(ctx, j.ID)
	if err != nil {
		return err
	}
	if !found {
		j.Status = Queued
		j.BytesDone = 0
		m.log.Info("job interrupted before its commit; queued again", "partner", j.Partner, "job_id", j.ID, "file", j.Filename)
		return m.persist(n)
	}
	rep := &pipeline.Report{}
	if err := json.Unmarshal(report, rep); err != nil {
		return fmt.Errorf("jobs: report of %s: %w", j.ID, err)
	}
	rep.Applied = true
	m.finish(j, rep, nil)
	m.log.Info("job committed before the process stopped; finished from the warehouse", "partner", j.Partner, "job_id", j.ID, "file", j.Filename, "status", j.Status)
	if err := m.persist(n); err != nil {
		return err
	}
	m.archive(j)
	return nil
}

func (m *Manager) index(n *notification) {
	m.notifs[n.ID] = n
	m.byKey[n.Key] = n
	for _, j := range n.Jobs {
		m.jobs[j.ID] = j
	}
}

// persist writes a notification atomically and durably. Called with mu
// held, or before the notification is shared.
func (m *Manager) persist(n *notification) error {
	data, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		return err
	}
	return durable.WriteFile(filepath.Join(m.notifDir(), n.ID+".json"), data, 0o600)
}

func notificationKey(partner string, files []File) string {
	var b strings.Builder
	b.WriteString(partner)
	for _, f := range files {
		b.WriteString("\n" + f.Name + " " + f.MD5)
	}
	return b.String()
}

// Accept checks a notification and, if every file is there with its MD5,
// enqueues one job per file, in order. The same notification again (same
// files, same MD5s) returns the jobs it created the first time, with
// duplicate set, and enqueues nothing.
func (m *Manager) Accept(ctx context.Context, partnerID string, notified []File) (jobs []Job, duplicate bool, err error) {
	files := make([]File, len(notified))
	for i, f := range notified {
		f.MD5 = strings.ToLower(f.MD5)
		files[i] = f
	}
	key := notificationKey(partnerID, files)
	m.acceptMu.Lock()
	defer m.acceptMu.Unlock()
	m.mu.Lock()
	if n, ok := m.byKey[key]; ok {
		out := snapshot(n.Jobs)
		m.mu.Unlock()
		return out, true, nil
	}
	m.mu.Unlock()

	box, err := m.cfg.Box(partnerID)
	if err != nil {
		return nil, false, err
	}
	// Check everything first, so a refused notification moves nothing.
	var problems []Problem
	for _, f := range files {
		sums, err := box.Sums(f.Name)
		switch {
		case errors.Is(err, os.ErrNotExist) || errors.Is(err, inbox.ErrNotFile):
			problems = append(problems, Problem{Filename: f.Name, Field: "filenames", NotFound: true,
				Message: fmt.Sprintf("%s: no such file in your SFTP folder (upload it there first; a file is visible only once its upload completed)", f.Name)})
		case err != nil:
			return nil, false, fmt.Errorf("%s: %w", f.Name, err)
		case sums.MD5 != f.MD5:
			problems = append(problems, mismatch(f, sums.MD5))
		}
	}
	if len(problems) > 0 {
		return nil, false, &RejectedError{Problems: problems}
	}

	now := time.Now().UTC()
	n := &notification{ID: newID(), Partner: partnerID, State: accepting, Key: key, CreatedAt: now}
	for _, f := range files {
		n.Jobs = append(n.Jobs, &Job{
			ID: newID(), Partner: partnerID, NotificationID: n.ID, Filename: f.Name, Type: string(f.Type),
			MD5: f.MD5, Status: Queued, CreatedAt: now, Outcome: pipeline.Outcome{Errors: []stages.Rejection{}},
		})
	}
	// Written before any file moves: if the process dies now, the next
	// start finds it accepting and puts the files back.
	if err := m.cfg.Faults.Hit(failpoint.NotifyAccepting); err != nil {
		return nil, false, fmt.Errorf("jobs: %w", err)
	}
	if err := m.persist(n); err != nil {
		_ = os.Remove(filepath.Join(m.notifDir(), n.ID+".json.tmp"))
		return nil, false, fmt.Errorf("jobs: recording the notification: %w", err)
	}
	var taken []inbox.Taken
	undo := func() {
		for _, t := range taken {
			if err := box.Restore(t); err != nil {
				m.log.Error("restoring a file of a refused notification", "partner", partnerID, "file", t.Name, "err", err)
			}
		}
		_ = os.Remove(filepath.Join(m.notifDir(), n.ID+".json"))
	}
	for i, f := range files {
		j := n.Jobs[i]
		t, err := box.Take(f.Name, m.spoolPath(j))
		if err != nil {
			undo()
			if errors.Is(err, os.ErrNotExist) {
				return nil, false, &RejectedError{Problems: []Problem{{Filename: f.Name, Field: "filenames", NotFound: true,
					Message: fmt.Sprintf("%s: removed or renamed while the notification was checked", f.Name)}}}
			}
			return nil, false, fmt.Errorf("jobs: %w", err)
		}
		taken = append(taken, t)
		// The file was replaced between the check and the move: what was
		// moved is what counts.
		if t.MD5 != f.MD5 {
			undo()
			return nil, false, &RejectedError{Problems: []Problem{mismatch(f, t.MD5)}}
		}
		j.SHA256, j.BytesTotal = t.SHA256, t.Size
		if err := durable.SyncFile(t.Path); err != nil {
			undo()
			return nil, false, fmt.Errorf("jobs: %w", err)
		}
	}
	if err := durable.SyncDir(m.spoolDir()); err != nil {
		undo()
		return nil, false, fmt.Errorf("jobs: %w", err)
	}
	if err := m.cfg.Faults.Hit(failpoint.NotifySpooled); err != nil {
		undo()
		return nil, false, fmt.Errorf("jobs: %w", err)
	}
	n.State = accepted
	m.mu.Lock()
	err = m.persist(n)
	if err == nil {
		m.index(n)
		jobs = snapshot(n.Jobs)
	}
	m.mu.Unlock()
	if err != nil {
		undo()
		return nil, false, fmt.Errorf("jobs: recording the notification: %w", err)
	}
	_ = m.cfg.Faults.Hit(failpoint.NotifyAccepted) // accepted: an error here would lie
	for _, j := range jobs {
		m.log.Info("job queued", "partner", partnerID, "job_id", j.ID, "file", j.Filename, "bytes", j.BytesTotal, "md5", j.MD5, "notification_id", n.ID)
	}
	m.signal()
	return jobs, false, nil
}

func mismatch(f File, actual string) Problem {
	return Problem{Filename: f.Name, Field: "hashes", Expected: f.MD5, Actual: actual,
		Message: fmt.Sprintf("%s: MD5 mismatch: notified %s, file on the server has %s", f.Name, f.MD5, actual)}
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

func snapshot(js []*Job) []Job {
	out := make([]Job, len(js))
	for i, j := range js {
		out[i] = *j
		out[i].Errors = append([]stages.Rejection{}, j.Errors...)
		if j.Batch != nil {
			b := *j.Batch
			if b.Content != nil {
				c := *b.Content
				b.Content = &c
			}
			if b.Delivery != nil {
				d := *b.Delivery
				b.Delivery = &d
			}
			out[i].Batch = &b
		}
	}
	return out
}

// Get returns a partner's upload job; other partners' jobs, and batches,
// do not exist for it.
func (m *Manager) Get(partnerID, id string) (Job, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok || j.Partner != partnerID || j.Source != "" {
		return Job{}, false
	}
	return snapshot([]*Job{j})[0], true
}

// List returns a partner's most recent upload jobs, newest first.
func (m *Manager) List(partnerID string, limit int) []Job {
	m.mu.Lock()
	var mine []*Job
	for _, j := range m.jobs {
		if j.Partner == partnerID && j.Source == "" {
			mine = append(mine, j)
		}
	}
	sort.Slice(mine, func(a, b int) bool { return mine[a].ID > mine[b].ID }) // UUIDv7: time order
	if limit > 0 && len(mine) > limit {
		mine = mine[:limit]
	}
	out := snapshot(mine)
	m.mu.Unlock()
	return out
}

func (m *Manager) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}
