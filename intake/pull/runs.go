package pull

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/flatfiler/flatfiler/intake/harvest"
	"github.com/flatfiler/flatfiler/internal/durable"
	"github.com/flatfiler/flatfiler/pipeline"
)

// Run states, as the spec's Harvests section names them.
const (
	Working  = "working"
	Complete = "complete"
)

// Run is a harvest of one user, under way or done.
type Run struct {
	// ID is the run's, and its ingest row's job_id: after a crash the
	// warehouse says whether the run's commit happened.
	ID      string `json:"id"`
	Partner string `json:"partner_id"`
	User    string `json:"user"`
	Status  string `json:"status"` // Working or Complete
	// Outcome is the pipeline's status once complete (success,
	// partial-success), or error when nothing was applied; Message says why.
	Outcome    string           `json:"outcome,omitempty"`
	Message    string           `json:"message,omitempty"`
	Requests   int              `json:"requests,omitempty"`
	Closed     []string         `json:"closed,omitempty"`
	Report     *pipeline.Report `json:"report,omitempty"`
	Attempts   int              `json:"attempts"`
	StartedAt  time.Time        `json:"started_at"`
	FinishedAt time.Time        `json:"finished_at,omitzero"`
}

// Runs starts harvests in the background and keeps each user's latest,
// on disk: a run under way when the process stops is settled from the
// warehouse at the next Open (its commit happened, or it runs again), so
// a harvest is applied exactly once.
type Runs struct {
	H *Harvester
	// Dir holds one record per user's latest run; empty: memory only.
	Dir string
	// Config finds a partner's endpoint when a run resumes.
	Config func(partnerID string) (*harvest.Config, bool)
	// Context bounds every run: the server's life.
	Context context.Context

	mu   sync.Mutex
	runs map[[2]string]*Run
	// done closes when a user's run under way ends.
	done map[[2]string]chan struct{}
	wg   sync.WaitGroup

	sched  scheduler
	active sync.Map // partners whose scheduled run is under way here
}

// maxKeptRuns bounds the runs kept in memory: past it, finished ones are
// dropped (their status is then unknown, as for a user never harvested).
const maxKeptRuns = 100_000

// Open reads the runs on disk and resumes those under way.
func (rs *Runs) Open(ctx context.Context) error {
	rs.mu.Lock()
	if rs.runs == nil {
		rs.runs = map[[2]string]*Run{}
	}
	rs.mu.Unlock()
	if rs.Dir == "" {
		return nil
	}
	if err := os.MkdirAll(rs.Dir, 0o700); err != nil {
		return fmt.Errorf("harvest runs: %w", err)
	}
	entries, err := os.ReadDir(rs.Dir)
	if err != nil {
		return fmt.Errorf("harvest runs: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue // partners/: the schedule's state (Due)
		}
		path := filepath.Join(rs.Dir, e.Name())
		if strings.HasSuffix(e.Name(), ".tmp") {
			_ = os.Remove(path) // a write a crash cut short: the record before it stands
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("harvest runs: %w", err)
		}
		r := &Run{}
		if err := json.Unmarshal(data, r); err != nil {
			return fmt.Errorf("harvest runs: %s: %w", path, err)
		}
		rs.mu.Lock()
		rs.runs[[2]string{r.Partner, r.User}] = r
		rs.mu.Unlock()
		if r.Status == Working {
			if err := rs.resume(ctx, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// resume settles a run a stop interrupted: done if its ingest row is in
// the warehouse, else run again.
func (rs *Runs) resume(ctx context.Context, r *Run) error {
	report, done, err := rs.H.Store.IngestReport(ctx, r.ID)
	if err != nil {
		return err
	}
	if done {
		rep := &pipeline.Report{}
		_ = json.Unmarshal(report, rep) // a row the load wrote: it reads
		rs.H.logger().Info("harvest found applied after a restart", "partner", r.Partner, "user", r.User, "run", r.ID)
		rs.mu.Lock()
		rs.finish(r, &Outcome{Report: rep}, nil)
		rs.mu.Unlock()
		return nil
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	cfg, ok := rs.Config(r.Partner)
	if !ok {
		rs.finish(r, nil, fmt.Errorf("partner %s has no harvest endpoint any more: %w", r.Partner, ErrNoEndpoint))
		return nil
	}
	rs.H.logger().Info("harvest resumed after a restart", "partner", r.Partner, "user", r.User, "run", r.ID)
	rs.launch(r, cfg)
	return nil
}

// Start harvests the user unless a harvest of the user is under way; it
// returns the run either way, and whether it started one.
func (rs *Runs) Start(partnerID string, cfg *harvest.Config, user string) (Run, bool, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.runs == nil {
		rs.runs = map[[2]string]*Run{}
	}
	key := [2]string{partnerID, user}
	prev, ok := rs.runs[key]
	if ok && prev.Status == Working {
		return *prev, false, nil
	}
	if len(rs.runs) >= maxKeptRuns {
		for k, r := range rs.runs {
			if r.Status == Complete {
				delete(rs.runs, k)
			}
		}
	}
	r := &Run{ID: uuid.Must(uuid.NewV7()).String(), Partner: partnerID, User: user, Status: Working, StartedAt: rs.H.now().UTC()}
	// On disk before it runs: a crash from here on finds it.
	if err := rs.save(r); err != nil {
		return Run{}, false, err
	}
	if ok {
		rs.remove(prev)
	}
	rs.runs[key] = r
	rs.launch(r, cfg)
	return *r, true, nil
}

// launch runs r in the background. Called with mu held, or before r is
// shared.
func (rs *Runs) launch(r *Run, cfg *harvest.Config) {
	r.Attempts++
	id := r.ID
	if rs.done == nil {
		rs.done = map[[2]string]chan struct{}{}
	}
	key := [2]string{r.Partner, r.User}
	done := make(chan struct{})
	rs.done[key] = done
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		defer close(done)
		out, err := rs.H.HarvestUser(rs.Context, r.Partner, cfg, r.User, id)
		if err != nil && rs.Context.Err() != nil {
			// Stopped with the server: it stays working on disk, and the
			// next start settles it.
			return
		}
		rs.mu.Lock()
		defer rs.mu.Unlock()
		rs.finish(r, out, err)
	}()
}

// doneOf is closed when the user's run under way ends (at once if none).
func (rs *Runs) doneOf(partnerID, user string) <-chan struct{} {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if d, ok := rs.done[[2]string{partnerID, user}]; ok {
		return d
	}
	closed := make(chan struct{})
	close(closed)
	return closed
}

// finish records a run's end. Called with mu held, or before r is shared.
func (rs *Runs) finish(r *Run, out *Outcome, err error) {
	h := rs.H
	h.setup()
	r.Status, r.FinishedAt = Complete, h.now().UTC()
	if out != nil {
		r.Requests, r.Closed, r.Report = out.Requests, out.Closed, out.Report
	}
	switch {
	case err != nil:
		r.Outcome, r.Message = pipeline.StatusError, err.Error()
		h.logger().Warn("harvest failed; nothing applied", "partner", r.Partner, "user", r.User, "run", r.ID, "err", err)
	case out.Report.Status == pipeline.StatusError:
		r.Outcome, r.Message = pipeline.StatusError, out.Report.Fatal
	default:
		r.Outcome = out.Report.Status
		h.Metrics.LastSuccess.WithLabelValues(r.Partner).SetToCurrentTime()
		h.logger().Info("harvest applied", "partner", r.Partner, "user", r.User, "run", r.ID, "status", r.Outcome,
			"requests", r.Requests, "closed", len(r.Closed), "seconds", r.FinishedAt.Sub(r.StartedAt).Seconds())
	}
	h.Metrics.Runs.WithLabelValues(r.Outcome).Inc()
	h.Metrics.Duration.Observe(r.FinishedAt.Sub(r.StartedAt).Seconds())
	if err := rs.save(r); err != nil {
		// The warehouse has the truth: the next start settles the run from it.
		h.logger().Error("harvest run not recorded", "run", r.ID, "err", err)
	}
}

// save writes r's record whole: a temporary file renamed over it.
func (rs *Runs) save(r *Run) error {
	if rs.Dir == "" {
		return nil
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(filepath.Join(rs.Dir, r.ID+".json"), data, 0o600); err != nil {
		return fmt.Errorf("harvest run %s: %w", r.ID, err)
	}
	return nil
}

// remove deletes a superseded run's record.
func (rs *Runs) remove(r *Run) {
	if rs.Dir == "" {
		return
	}
	if err := os.Remove(filepath.Join(rs.Dir, r.ID+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		rs.H.logger().Warn("harvest run record not removed", "run", r.ID, "err", err)
	}
}

// Get returns the user's latest run.
func (rs *Runs) Get(partnerID, user string) (Run, bool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r, ok := rs.runs[[2]string{partnerID, user}]
	if !ok {
		return Run{}, false
	}
	return *r, true
}

// Wait waits for the runs under way (after Context is done, for their end).
func (rs *Runs) Wait() { rs.wg.Wait() }
