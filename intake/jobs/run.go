package jobs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/sourcegraph/conc"

	"github.com/flatfiler/flatfiler/internal/failpoint"
	"github.com/flatfiler/flatfiler/parse"
	"github.com/flatfiler/flatfiler/pipeline"
	"github.com/flatfiler/flatfiler/warehouse"
)

// Run works the queue until ctx ends. At the end a running job has Grace to
// finish; then it is stopped, its load rolled back, and it is queued again
// for the next start.
func (m *Manager) Run(ctx context.Context) {
	m.sweep()
	var wg conc.WaitGroup
	for range m.cfg.Workers {
		wg.Go(func() {
			m.running.Add(1)
			defer m.running.Add(-1)
			m.work(ctx)
		})
	}
	if m.cfg.Offload != nil {
		wg.Go(func() { m.offloadLoop(ctx) })
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
		m.saveUnsaved()
		group, next := m.claim()
		if group == nil {
			var later <-chan time.Time
			var t *time.Timer
			if next > 0 {
				t = time.NewTimer(next)
				later = t.C
			}
			select {
			case <-ctx.Done():
			case <-m.wake:
			case <-later:
			}
			if t != nil {
				t.Stop()
			}
			if ctx.Err() != nil {
				return
			}
			continue
		}
		m.run(ctx, group)
		m.mu.Lock()
		delete(m.busy, group[0].j.Partner)
		m.mu.Unlock()
		// Another worker may be waiting for this partner to be free.
		m.signal()
		if ctx.Err() != nil {
			return
		}
	}
}

// unsavedRetry is how soon a record that could not be written is tried
// again.
const unsavedRetry = 5 * time.Second

// claimed is a job taken to run, with the notification that records it.
type claimed struct {
	j *Job
	n *notification
}

// A partner's push batches queued one after another apply in one commit
// (pipeline.IngestGroup), up to these limits: a group's first batch is
// taken whatever its size, the others while the group stays under
// groupBytes. A commit's fixed cost (some 30 statements) is most of a
// small batch's time: eight small batches sent at once waited for eight
// commits, one after another.
const (
	groupJobs  = 64
	groupBytes = 16 << 20
)

// claim picks the oldest queued job whose partner has nothing running or
// waiting for a retry, and marks it processing; a batch takes with it the
// batches of its partner queued right after it (see groupJobs).
// Notifications are taken in the order they were accepted, files in the
// order they were listed. With nothing to take now, next says when a
// waiting job is due (0: none).
func (m *Manager) claim() (group []claimed, next time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var order []*notification
	for _, n := range m.notifs {
		order = append(order, n)
		if n.unsaved {
			next = unsavedRetry
		}
	}
	sort.Slice(order, func(a, b int) bool { return order[a].ID < order[b].ID })
	now := time.Now().UTC()
	blocked := map[string]bool{}
	var partner string
	var bytes int64
	for _, n := range order {
		if group != nil && n.Partner != partner {
			continue
		}
		if group == nil && (m.busy[n.Partner] || blocked[n.Partner]) {
			continue
		}
		for _, j := range n.Jobs {
			if j.Status != Queued {
				continue
			}
			// A partner's files apply in order: one waiting for a retry
			// holds back the ones after it.
			blocked[n.Partner] = true
			if j.NextAttemptAt != nil && j.NextAttemptAt.After(now) {
				next = sooner(next, j.NextAttemptAt.Sub(now))
				if group != nil {
					return group, 0
				}
				break
			}
			if group != nil && (j.Source != SourceBatch || len(group) == groupJobs || bytes+j.BytesTotal > groupBytes) {
				return group, 0
			}
			j.Status, j.StartedAt, j.BytesDone = Processing, &now, 0
			j.Attempts++
			if err := m.persist(n); err != nil {
				// Nothing ran: try again once the record can be written.
				j.Status, j.StartedAt = Queued, nil
				j.Attempts--
				m.retryLater(j, recordError(err))
				if group != nil {
					return group, 0
				}
				next = sooner(next, time.Until(*j.NextAttemptAt))
				break
			}
			if err := m.cfg.Faults.Hit(failpoint.JobClaimed); err != nil {
				m.log.Error("job claim", "job_id", j.ID, "err", err)
			}
			m.busy[n.Partner] = true
			group = append(group, claimed{j, n})
			partner, bytes = n.Partner, bytes+j.BytesTotal
			if j.Source != SourceBatch {
				return group, 0
			}
		}
	}
	if group != nil {
		return group, 0
	}
	return nil, next
}

// sooner is the shorter of two waits, 0 meaning none.
func sooner(a, b time.Duration) time.Duration {
	if a == 0 || b < a {
		return b
	}
	return a
}

// recordError says why a job's record could not be written, in words a
// partner can read: without the server's paths.
func recordError(err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("the server's disk is full (the job's record could not be written): %w", syscall.ENOSPC)
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("the job's record could not be written: %w", pe.Err)
	}
	return fmt.Errorf("the job's record could not be written: %w", err)
}

// retryLater schedules a queued job's next attempt after a failure that
// was not the file's. Called with mu held.
func (m *Manager) retryLater(j *Job, cause error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.Multiplier = m.cfg.RetryAfter, m.cfg.RetryMax, 2
	var wait time.Duration
	for range max(j.Attempts, 1) {
		wait = b.NextBackOff()
	}
	at := time.Now().UTC().Add(wait)
	j.NextAttemptAt = &at
	reason := cause.Error()
	var storage *warehouse.StorageError
	if errors.As(cause, &storage) {
		reason = storage.Reason // the rest is the statement that met it
	}
	j.Message = fmt.Sprintf("not applied yet: %s; the file is kept and will be applied then (attempt %d at %s)",
		reason, j.Attempts+1, at.Format(time.RFC3339))
	m.cfg.Metrics.Retries.Inc()
	m.log.Warn("job attempt failed for the server's storage; retrying", "partner", j.Partner, "job_id", j.ID,
		"file", j.Filename, "next_attempt", j.Attempts+1, "retry_in", wait.Round(time.Millisecond), "err", cause)
}

// run applies a claimed group and records each job's outcome. A group of
// batches that fails for one of them (not the server's storage) is
// applied again one batch at a time, so each gets its own outcome.
func (m *Manager) run(ctx context.Context, group []claimed) {
	m.mu.Lock()
	first := group[0].j
	opts := pipeline.Options{Partner: first.Partner, MaxErrors: m.cfg.MaxErrors, Logger: m.log, Workers: m.cfg.ParseWorkers}
	if first.Source == SourceBatch {
		opts.Format = pipeline.PushBatch
	} else if first.Type != "" {
		opts.Type, _ = parse.ParseFileType(first.Type)
	}
	started := make([]time.Time, len(group))
	for i, c := range group {
		started[i] = *c.j.StartedAt
		if c.j.Attempts == 1 {
			m.cfg.Metrics.Wait.Observe(started[i].Sub(c.j.CreatedAt).Seconds())
		}
	}
	m.mu.Unlock()
	for _, c := range group {
		m.log.Info("job started", "partner", c.j.Partner, "job_id", c.j.ID, "file", c.j.Filename, "attempt", c.j.Attempts, "group", len(group))
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

	reps, err := m.ingest(jobCtx, group, opts)
	applied := err == nil
	if applied {
		for range group {
			_ = m.cfg.Faults.Hit(failpoint.JobIngested)
		}
	}
	m.mu.Lock()
	switch {
	case err != nil && jobCtx.Err() != nil:
		for _, c := range group {
			requeue(c.j)
			m.save(c.n)
			m.log.Info("job stopped by shutdown; queued again", "partner", c.j.Partner, "job_id", c.j.ID, "file", c.j.Filename)
		}
		m.mu.Unlock()
		return
	case errors.Is(err, warehouse.ErrStorage):
		// Nothing of the files was applied, and nothing in them was at fault.
		for _, c := range group {
			requeue(c.j)
			m.retryLater(c.j, err)
			m.save(c.n)
		}
		m.mu.Unlock()
		return
	case err != nil && len(group) > 1:
		m.mu.Unlock()
		m.log.Warn("a group of batches was not applied; applying them one at a time", "partner", first.Partner,
			"batches", len(group), "err", err)
		for i := range group {
			m.run(ctx, group[i:i+1])
		}
		return
	}
	for i, c := range group {
		j := c.j
		var rep *pipeline.Report
		if reps != nil {
			rep = reps[i]
		}
		m.finish(j, rep, err)
		// The spooled file goes only once the job's end is on disk: until then
		// a restart must be able to run it again.
		if m.save(c.n) {
			_ = m.cfg.Faults.Hit(failpoint.JobRecorded)
			m.archive(j)
		}
		m.notifyFinished(j)
		m.cfg.Metrics.Finished.WithLabelValues(j.Status).Inc()
		m.cfg.Metrics.Duration.Observe(j.FinishedAt.Sub(started[i]).Seconds())
		m.log.Info("job finished", "partner", j.Partner, "job_id", j.ID, "file", j.Filename, "status", j.Status,
			"type", j.Type, "errors", j.ErrorCount, "bytes", j.BytesTotal, "seconds", j.FinishedAt.Sub(started[i]).Seconds())
	}
	m.mu.Unlock()
}

func (m *Manager) notifyFinished(j *Job) {
	if m.cfg.Finished != nil {
		m.cfg.Finished(snapshot([]*Job{j})[0])
	}
}

// requeue puts a job that applied nothing back in the queue.
func requeue(j *Job) { j.Status, j.StartedAt, j.BytesDone = Queued, nil, 0 }

// save writes a notification, or marks it to be written again soon; it
// reports whether the record is on disk. A final job whose record is not
// is still known to be done: its file's audit row in the warehouse carries
// the job ID, and the next start settles it from there. Called with mu held.
func (m *Manager) save(n *notification) bool {
	if err := m.persist(n); err != nil {
		if !n.unsaved {
			m.log.Error("job state not saved; trying again", "notification_id", n.ID, "in", unsavedRetry, "err", err)
		}
		n.unsaved = true
		return false
	}
	n.unsaved = false
	return true
}

// saveUnsaved writes the records a full disk held back, and archives the
// files of their finished jobs.
func (m *Manager) saveUnsaved() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range m.notifs {
		if n.unsaved && m.save(n) {
			m.log.Info("job state saved", "notification_id", n.ID)
			for _, j := range n.Jobs {
				if j.Final() {
					m.archive(j)
				}
			}
		}
	}
}

// ingest applies a group's spooled files. Reports are nil when a file
// could not be opened.
func (m *Manager) ingest(ctx context.Context, group []claimed, opts pipeline.Options) ([]*pipeline.Report, error) {
	parts := make([]pipeline.Part, len(group))
	for i, c := range group {
		f, err := os.Open(m.spoolPath(c.j))
		if err != nil {
			return nil, fmt.Errorf("spooled file: %w", err)
		}
		defer f.Close()
		j := c.j
		parts[i] = pipeline.Part{Name: j.Filename, R: f, JobID: j.ID, OnProgress: func(bytes, _ int64) {
			m.mu.Lock()
			j.BytesDone = bytes
			m.mu.Unlock()
		}}
	}
	return m.cfg.Pipeline.IngestGroup(ctx, parts, opts)
}

// finish records a run's outcome on the job. Called with mu held, or
// before the job is shared.
func (m *Manager) finish(j *Job, rep *pipeline.Report, err error) {
	now := time.Now().UTC()
	j.FinishedAt, j.NextAttemptAt, j.Message = &now, nil, ""
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

// archive moves a finished job's file out of the spool, if it is still
// there.
func (m *Manager) archive(j *Job) {
	dest := m.archivePath(j)
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		m.log.Error("archive", "job_id", j.ID, "err", err)
		return
	}
	_ = m.cfg.Faults.Hit(failpoint.JobArchiving)
	err := os.Rename(m.spoolPath(j), dest)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		m.log.Error("archive", "job_id", j.ID, "err", err)
	}
	if m.cfg.Offload != nil && j.Source == "" {
		m.wakeOffload()
	}
}

func (m *Manager) archivePath(j *Job) string {
	return filepath.Join(m.archiveDir(), j.Partner, j.CreatedAt.Format(time.DateOnly), j.ID+"-"+j.Filename)
}

// sweep deletes archived files and finished notifications older than the
// retention, and with a finished batch its content (the callback's body).
func (m *Manager) sweep() {
	cutoff := time.Now().Add(-m.cfg.Retention)
	if m.cfg.Offload != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		n, err := m.cfg.Offload.Expire(ctx, cutoff)
		cancel()
		if err != nil {
			m.log.Warn("expiring offloaded files", "err", err)
		} else if n > 0 {
			m.log.Info("offloaded files expired", "files", n)
		}
	}
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
			if j.Batch != nil && j.Batch.Outstanding() {
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
			if j.Batch != nil && j.Batch.Content != nil {
				if err := os.Remove(j.Batch.Content.Path); err == nil || errors.Is(err, fs.ErrNotExist) {
					m.log.Info("batch content expired", "partner", j.Partner, "batch_id", j.ID)
				}
			}
			delete(m.jobs, j.ID)
		}
	}
}

// counts returns jobs per state.
// counts are the jobs by status, and how long the oldest queued job has
// waited at now.
func (m *Manager) counts(now time.Time) (map[string]int, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := map[string]int{}
	var oldest time.Duration
	for _, j := range m.jobs {
		c[j.Status]++
		if j.Status == Queued {
			oldest = max(oldest, now.Sub(j.CreatedAt))
		}
	}
	return c, oldest
}

// ErrWorkersDown is a queue not worked by all its workers: before Run,
// after it, or a worker gone.
var ErrWorkersDown = errors.New("job workers not running")

// Working reports whether every worker runs (the readiness check).
func (m *Manager) Working(context.Context) error {
	if n := int(m.running.Load()); n < m.cfg.Workers {
		return fmt.Errorf("%w: %d of %d", ErrWorkersDown, n, m.cfg.Workers)
	}
	return nil
}
