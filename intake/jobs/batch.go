package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/flatfiler/flatfiler/internal/durable"
	"github.com/flatfiler/flatfiler/internal/failpoint"
	"github.com/flatfiler/flatfiler/pipeline"
	"github.com/flatfiler/flatfiler/stages"
)

// SourceBatch marks a push batch's job (Job.Source); a notified file's is "".
const SourceBatch = "batch"

// BatchInfo is what a push batch's job carries beyond a file's. It lives in
// the job's record, so that one durable write accepts the batch and every
// later step (content built, callback attempts) is on disk with the job.
// The intake/batches package owns its meaning; jobs only keeps it.
type BatchInfo struct {
	Callback       string `json:"callback,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// User is the partner customer id of the JWT that pushed it; empty
	// for the API key.
	User string `json:"user,omitempty"`
	// Records counts the records received (users, accounts, transactions).
	Records int64 `json:"records"`
	// Content is set once the callback payload is built (intake/batches).
	Content *BatchContent `json:"content,omitempty"`
	// Delivery is the callback's state; nil until the content is built.
	Delivery *Delivery `json:"delivery,omitempty"`
}

// Outstanding reports whether the batch's work after its job is not over:
// its content is to be built, or its callback is still being delivered.
func (b *BatchInfo) Outstanding() bool {
	return b.Content == nil || b.Delivery != nil && b.Delivery.State == DeliveryPending
}

// BatchContent describes a built callback payload.
type BatchContent struct {
	Path   string    `json:"path"`
	SHA256 string    `json:"sha256"`
	Bytes  int64     `json:"bytes"`
	At     time.Time `json:"at"`
}

// Delivery states of a callback.
const (
	DeliveryNone      = "none"      // the batch named no callback
	DeliveryPending   = "pending"   // not delivered yet; NextAttemptAt says when
	DeliveryDelivered = "delivered" // the receiver answered 2xx
	DeliveryFailed    = "failed"    // given up: 410 Gone, or the schedule ran out
)

// Delivery is a callback's state, as the batch status shows it.
type Delivery struct {
	State         string     `json:"state"`
	Attempts      int        `json:"attempts"`
	LastError     string     `json:"last_error,omitempty"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	DeliveredAt   *time.Time `json:"delivered_at,omitempty"`
}

// incomingSuffix marks a batch body being received; one left by a crash
// was never answered, and Open removes it.
const incomingSuffix = ".incoming"

// Incoming creates the file a batch body is received into, in the spool
// (so that accepting it is a rename). The caller writes and syncs it, then
// passes its path to AcceptBatch, or removes it.
func (m *Manager) Incoming() (*os.File, error) {
	f, err := os.CreateTemp(m.spoolDir(), "batch-*"+incomingSuffix)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	return f, nil
}

// AcceptBatch enqueues a received batch body (a synced file from Incoming)
// as a job; the job's ID is the batch ID. With an idempotency key already
// accepted for the partner, it returns that batch's job, duplicate set,
// and removes the file.
func (m *Manager) AcceptBatch(ctx context.Context, partnerID, incoming string, bytes int64, sha256 string, info BatchInfo) (_ Job, duplicate bool, err error) {
	key := "batch\n" + partnerID + "\n"
	if info.IdempotencyKey != "" {
		key += info.IdempotencyKey
	} else {
		key += newID() // no key: every PUT is a batch of its own
	}
	m.acceptMu.Lock()
	defer m.acceptMu.Unlock()
	m.mu.Lock()
	if n, ok := m.byKey[key]; ok {
		j := snapshot(n.Jobs)[0]
		m.mu.Unlock()
		_ = os.Remove(incoming)
		return j, true, nil
	}
	m.mu.Unlock()
	now := time.Now().UTC()
	id := newID()
	j := &Job{
		ID: id, Partner: partnerID, NotificationID: id, Filename: "batch-" + id + ".json", Type: "combined",
		Source: SourceBatch, Batch: &info, SHA256: sha256, Status: Queued, BytesTotal: bytes, CreatedAt: now,
		Outcome: pipeline.Outcome{Errors: []stages.Rejection{}},
	}
	n := &notification{ID: id, Partner: partnerID, State: accepted, Key: key, CreatedAt: now, Jobs: []*Job{j}}
	// The body is in place before the record that names it: a crash in
	// between leaves a spooled file no job names, which Open removes.
	if err := os.Rename(incoming, m.spoolPath(j)); err != nil {
		return Job{}, false, fmt.Errorf("jobs: %w", err)
	}
	if err := durable.SyncDir(m.spoolDir()); err != nil {
		_ = os.Remove(m.spoolPath(j))
		return Job{}, false, fmt.Errorf("jobs: %w", err)
	}
	m.mu.Lock()
	err = m.persist(n)
	if err == nil {
		m.index(n)
	}
	out := snapshot(n.Jobs)[0]
	m.mu.Unlock()
	if err != nil {
		_ = os.Remove(filepath.Join(m.notifDir(), n.ID+".json"))
		_ = os.Remove(m.spoolPath(j))
		return Job{}, false, fmt.Errorf("jobs: recording the batch: %w", recordError(err))
	}
	_ = m.cfg.Faults.Hit(failpoint.NotifyAccepted) // accepted: an error here would lie
	m.log.Info("batch queued", "partner", partnerID, "batch_id", id, "bytes", bytes, "records", info.Records)
	m.signal()
	return out, false, nil
}

// GetBatch returns a partner's batch job.
func (m *Manager) GetBatch(partnerID, id string) (Job, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok || j.Partner != partnerID || j.Source != SourceBatch {
		return Job{}, false
	}
	return snapshot([]*Job{j})[0], true
}

// Batches returns every batch job whose callback work is not over: final
// jobs without content, and pending deliveries.
func (m *Manager) Batches() []Job {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Job
	for _, j := range m.jobs {
		if j.Source != SourceBatch || !j.Final() {
			continue
		}
		if j.Batch.Outstanding() {
			out = append(out, j)
		}
	}
	return snapshot(out)
}

// UpdateBatch changes a batch job's BatchInfo and writes it to disk before
// returning.
func (m *Manager) UpdateBatch(id string, change func(*BatchInfo)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok || j.Batch == nil {
		return fmt.Errorf("jobs: no batch %s", id)
	}
	before := *j.Batch
	change(j.Batch)
	if err := m.persist(m.notifs[j.NotificationID]); err != nil {
		*j.Batch = before
		return fmt.Errorf("jobs: recording batch %s: %w", id, recordError(err))
	}
	return nil
}

// InputPath is where a job's input is now: the spool until the job is
// final, the archive after.
func (m *Manager) InputPath(j Job) string {
	if _, err := os.Stat(m.spoolPath(&j)); err == nil {
		return m.spoolPath(&j)
	}
	return m.archivePath(&j)
}

// removeOrphans deletes batch bodies no job names: received but never
// answered (a crash before the job was recorded).
func (m *Manager) removeOrphans() {
	entries, err := os.ReadDir(m.spoolDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		_, known := m.jobs[name]
		_, uuidErr := uuid.Parse(name) // spooled files are named by their job's ID
		if strings.HasSuffix(name, incomingSuffix) || (!known && uuidErr == nil) {
			if err := os.Remove(filepath.Join(m.spoolDir(), name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				m.log.Error("removing an unanswered batch body", "file", name, "err", err)
				continue
			}
			m.log.Warn("removed a batch body that was never answered", "file", name)
		}
	}
}

// AllBatches returns every batch job.
func (m *Manager) AllBatches() []Job {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Job
	for _, j := range m.jobs {
		if j.Source == SourceBatch {
			out = append(out, j)
		}
	}
	return snapshot(out)
}
