package pull

import (
	"context"
	"sync"
	"time"

	"github.com/flatfiler/flatfiler/intake/harvest"
	"github.com/flatfiler/flatfiler/pipeline"
)

// Run states, as the spec's Harvests section names them.
const (
	Working  = "working"
	Complete = "complete"
)

// Run is a harvest of one user, under way or done.
type Run struct {
	Partner, User string
	Status        string // Working or Complete
	// Outcome is the pipeline's status once complete (success,
	// partial-success), or error when nothing was applied; Message says why.
	Outcome    string
	Message    string
	Requests   int
	Closed     []string
	Report     *pipeline.Report
	StartedAt  time.Time
	FinishedAt time.Time
}

// Runs starts harvests in the background and keeps each user's latest.
type Runs struct {
	H *Harvester
	// Context bounds every run: the server's life.
	Context context.Context

	mu   sync.Mutex
	runs map[[2]string]*Run
	wg   sync.WaitGroup
}

// maxKeptRuns bounds the runs kept: past it, finished ones are dropped
// (their status is then unknown, as for a user never harvested).
const maxKeptRuns = 100_000

// Start harvests the user unless a harvest of the user is under way; it
// returns the run either way, and whether it started one.
func (rs *Runs) Start(partnerID string, cfg *harvest.Config, user string) (Run, bool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.runs == nil {
		rs.runs = map[[2]string]*Run{}
	}
	key := [2]string{partnerID, user}
	if r, ok := rs.runs[key]; ok && r.Status == Working {
		return *r, false
	}
	if len(rs.runs) >= maxKeptRuns {
		for k, r := range rs.runs {
			if r.Status == Complete {
				delete(rs.runs, k)
			}
		}
	}
	r := &Run{Partner: partnerID, User: user, Status: Working, StartedAt: time.Now().UTC()}
	rs.runs[key] = r
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		out, err := rs.H.HarvestUser(rs.Context, partnerID, cfg, user)
		rs.finish(r, out, err)
	}()
	return *r, true
}

func (rs *Runs) finish(r *Run, out *Outcome, err error) {
	h := rs.H
	h.setup()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r.Status, r.FinishedAt = Complete, time.Now().UTC()
	if out != nil {
		r.Requests, r.Closed, r.Report = out.Requests, out.Closed, out.Report
	}
	switch {
	case err != nil:
		r.Outcome, r.Message = pipeline.StatusError, err.Error()
		h.logger().Warn("harvest failed; nothing applied", "partner", r.Partner, "user", r.User, "err", err)
	case out.Report.Status == pipeline.StatusError:
		r.Outcome, r.Message = pipeline.StatusError, out.Report.Fatal
	default:
		r.Outcome = out.Report.Status
		h.Metrics.LastSuccess.WithLabelValues(r.Partner).SetToCurrentTime()
		h.logger().Info("harvest applied", "partner", r.Partner, "user", r.User, "status", r.Outcome,
			"requests", r.Requests, "closed", len(r.Closed), "seconds", r.FinishedAt.Sub(r.StartedAt).Seconds())
	}
	h.Metrics.Runs.WithLabelValues(r.Outcome).Inc()
	h.Metrics.Duration.Observe(r.FinishedAt.Sub(r.StartedAt).Seconds())
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
