package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/sourcegraph/conc"

	"github.com/flatfiler/flatfiler/intake"
	"github.com/flatfiler/flatfiler/parse"
)

// Run works the queue until ctx ends. At the end a running job has Grace to
// finish; then it is stopped, its load rolled back, and it is queued again
// for the next start.
func (m *Manager) Run(ctx context.Context) {
	m.sweep()
	var wg conc.WaitGroup
	for range m.cfg.Workers {
		wg.Go(func() { m.work(ctx) })
	}
	wg.Go(func() {
		tick := time.NewTicker(time.Hour)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				m.sweep()
			}
		}
	})
	wg.Wait()
}

func (m *Manager) work(ctx context.Context) {
	for {
		j, n := m.claim()
		if j == nil {
			select {
			case <-ctx.Done():
				return
			case <-m.wake:
				continue
			}
		}
		m.run(ctx, n, j)
		// Another worker may be waiting for this partner to be free.
		m.signal()
		if ctx.Err() != nil {
			return
		}
	}
}

// claim picks the oldest queued job whose partner has nothing running, and
// marks it processing. Notifications are taken in the order they were
// accepted, files in the order they were listed.
func (m *Manager) claim() (*Job, *notification) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var order []*notification
	for _, n := range m.notifs {
		order = append(order, n)
	}
	sort.Slice(order, func(a, b int) bool { return order[a].ID < order[b].ID })
	for _, n := range order {
		if m.busy[n.Partner] {
			continue
		}
		for _, j := range n.Jobs {
			if j.Status != Queued {
				continue
			}
			now := time.Now().UTC()
			j.Status, j.StartedAt, j.BytesDone = Processing, &now, 0
			j.Attempts++
			if err := m.persist(n); err != nil {
				j.Status = Queued
				m.log.Error("job could not be marked processing", "job_id", j.ID, "err", err)
				return nil, nil
			}
			m.busy[n.Partner] = true
			return j, n
		}
	}
	return nil, nil
}

func (m *Manager) run(ctx context.Context, n *notification, j *Job) {
	m.mu.Lock()
	created, started := j.CreatedAt, *j.StartedAt
	opts := intake.Options{Partner: j.Partner, JobID: j.ID, MaxErrors: m.cfg.MaxErrors, Logger: m.log, Workers: m.cfg.ParseWorkers}
	if j.Type != "" {
		opts.Type, _ = parse.ParseFileType(j.Type)
	}
	m.mu.Unlock()
	m.cfg.Metrics.Wait.Observe(started.Sub(created).Seconds())
	m.log.Info("job started", "partner", j.Partner, "job_id", j.ID, "file", j.Filename, "attempt", j.Attempts)
	opts.OnProgress = func(bytes, _ int64) {
		m.mu.Lock()
		j.BytesDone = bytes
		m.mu.Unlock()
	}

	// The job's own context outlives ctx by the grace period, so that a
	// shutdown lets a nearly done file finish.
	jobCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(m.cfg.Grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-jobCtx.Done():
		}
	})
	defer stop()

	rep, err := m.ingest(jobCtx, j, opts)
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.busy, j.Partner)
	if err != nil && jobCtx.Err() != nil && (rep == nil || !rep.Applied) {
		j.Status, j.StartedAt, j.BytesDone = Queued, nil, 0
		if perr := m.persist(n); perr != nil {
			m.log.Error("job state not saved", "job_id", j.ID, "err", perr)
		}
		m.log.Info("job stopped by shutdown; queued again", "partner", j.Partner, "job_id", j.ID, "file", j.Filename)
		return
	}
	m.finish(j, rep, err)
	m.archive(j)
	if perr := m.persist(n); perr != nil {
		// The warehouse has the file and the job ID: the next start
		// settles the job from there.
		m.log.Error("job state not saved", "job_id", j.ID, "err", perr)
	}
	m.cfg.Metrics.Finished.WithLabelValues(j.Status).Inc()
	m.cfg.Metrics.Duration.Observe(j.FinishedAt.Sub(started).Seconds())
	m.log.Info("job finished", "partner", j.Partner, "job_id", j.ID, "file", j.Filename, "status", j.Status,
		"type", j.Type, "errors", j.ErrorCount, "bytes", j.BytesTotal, "seconds", j.FinishedAt.Sub(started).Seconds())
}

func (m *Manager) ingest(ctx context.Context, j *Job, opts intake.Options) (*intake.Report, error) {
	f, err := os.Open(m.spoolPath(j))
	if err != nil {
		return nil, fmt.Errorf("spooled file: %w", err)
	}
	defer f.Close()
	return m.cfg.Pipeline.Ingest(ctx, j.Filename, f, opts)
}

// finish records a run's outcome on the job. Called with mu held, or
// before the job is shared.
func (m *Manager) finish(j *Job, rep *intake.Report, err error) {
	now := time.Now().UTC()
	j.FinishedAt = &now
	if rep == nil {
		j.Status, j.Message = Error, err.Error()
		return
	}
	j.Status = rep.Status
	if rep.Type != "" {
		j.Type = string(rep.Type)
	}
	j.Outcome = rep.Outcome
	if rep.Applied {
		j.BytesDone = j.BytesTotal
	} else {
		j.Status, j.Message = Error, rep.Fatal
	}
}

// archive moves a finished job's file out of the spool.
func (m *Manager) archive(j *Job) {
	day := j.CreatedAt.Format(time.DateOnly)
	dir := filepath.Join(m.archiveDir(), j.Partner, day)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		m.log.Error("archive", "job_id", j.ID, "err", err)
		return
	}
	err := os.Rename(m.spoolPath(j), filepath.Join(dir, j.ID+"-"+j.Filename))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		m.log.Error("archive", "job_id", j.ID, "err", err)
	}
}

// sweep deletes archived files and finished notifications older than the
// retention.
func (m *Manager) sweep() {
	cutoff := time.Now().Add(-m.cfg.Retention)
	_ = filepath.WalkDir(m.archiveDir(), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil && info.ModTime().Before(cutoff) {
			if os.Remove(path) == nil {
				m.log.Info("archived file expired", "path", path)
			}
		}
		return nil
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, n := range m.notifs {
		old := true
		for _, j := range n.Jobs {
			if !j.Final() || j.FinishedAt == nil || j.FinishedAt.After(cutoff) {
				old = false
			}
		}
		if !old {
			continue
		}
		if err := os.Remove(filepath.Join(m.notifDir(), id+".json")); err != nil {
			continue
		}
		delete(m.notifs, id)
		delete(m.byKey, n.Key)
		for _, j := range n.Jobs {
			delete(m.jobs, j.ID)
		}
	}
}

// counts returns jobs per state.
func (m *Manager) counts() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := map[string]int{}
	for _, j := range m.jobs {
		c[j.Status]++
	}
	return c
}
