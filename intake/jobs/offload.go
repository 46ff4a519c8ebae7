package jobs

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// ArchiveStore keeps processed files off the server's disk: object storage
// (objstore.Store). A file is uploaded whole or not at all.
type ArchiveStore interface {
	Put(ctx context.Context, key, localPath string) error
	// Expire removes what was stored before cutoff: the retention.
	Expire(ctx context.Context, cutoff time.Time) (int, error)
}

// offloadLoop sends archived flat files to the store as jobs finish, and
// every hour whatever an earlier attempt left on disk. Push batches'
// bodies stay: their callback's content is built from them after the job.
func (m *Manager) offloadLoop(ctx context.Context) {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		m.offload(ctx)
		select {
		case <-ctx.Done():
			return
		case <-m.offloadWake:
		case <-tick.C:
		}
	}
}

func (m *Manager) wakeOffload() {
	select {
	case m.offloadWake <- struct{}{}:
	default:
	}
}

// offload uploads each finished flat file's archived copy and removes it
// from disk once stored. A crash between the two uploads it again, under
// the same key: the object is the same.
func (m *Manager) offload(ctx context.Context) {
	m.mu.Lock()
	var done []Job
	for _, j := range m.jobs {
		if j.Final() && j.Source == "" {
			done = append(done, Job{ID: j.ID, Partner: j.Partner, Filename: j.Filename, CreatedAt: j.CreatedAt})
		}
	}
	m.mu.Unlock()
	for _, j := range done {
		if ctx.Err() != nil {
			return
		}
		local := m.archivePath(&j)
		if _, err := os.Stat(local); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		key, _ := filepath.Rel(m.archiveDir(), local)
		if err := m.cfg.Offload.Put(ctx, filepath.ToSlash(key), local); err != nil {
			m.cfg.Metrics.Offloads.WithLabelValues("failed").Inc()
			m.log.Warn("archived file not offloaded; kept on disk and tried again", "partner", j.Partner, "job_id", j.ID, "file", j.Filename, "err", err)
			continue
		}
		if err := os.Remove(local); err != nil {
			m.log.Error("archived file offloaded but not removed from disk", "job_id", j.ID, "err", err)
			continue
		}
		m.cfg.Metrics.Offloads.WithLabelValues("ok").Inc()
		m.log.Info("archived file offloaded", "partner", j.Partner, "job_id", j.ID, "file", j.Filename, "key", key)
	}
}
