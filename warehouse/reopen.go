package warehouse

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/duckdb/duckdb-go/v2"
)

// ErrUnavailable is returned while the warehouse is being reopened after
// DuckDB invalidated it, or could not be reopened yet. Nothing is lost: the
// caller may try again (a job is retried, an API client is told to).
var ErrUnavailable = errors.New("warehouse unavailable")

// invalidates reports whether err leaves DuckDB's database unusable: a
// fatal error (a failed checkpoint, a failed rollback) or an internal one.
// DuckDB then answers every statement with "database has been
// invalidated" until it is opened again (src/main/client_context.cpp,
// ValidChecker::Invalidate).
func invalidates(err error) bool {
	var e *duckdb.Error
	return errors.As(err, &e) && (e.Type == duckdb.ErrorTypeFatal || e.Type == duckdb.ErrorTypeInternal)
}

// Check looks at an error a caller got from the store: if DuckDB
// invalidated the database, the store starts reopening it, and the error
// comes back marked ErrUnavailable; so does any error met while a reopen
// runs.
func (s *Store) Check(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	if invalidates(err) {
		s.invalidate(err)
	}
	s.reopenMu.Lock()
	reopening := s.reopening
	s.reopenMu.Unlock()
	if reopening {
		return fmt.Errorf("%w (reopening after a storage failure): %w", ErrUnavailable, err)
	}
	return err
}

// Unavailable returns why the warehouse cannot be used now, or nil.
func (s *Store) Unavailable() error {
	s.reopenMu.Lock()
	defer s.reopenMu.Unlock()
	if !s.reopening {
		return nil
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, s.down)
}

// awaitReopen waits for a reopen under way to end; it fails if the
// warehouse is still unavailable then (its reopen keeps failing).
func (s *Store) awaitReopen(ctx context.Context) error {
	s.reopenMu.Lock()
	reopening, done := s.reopening, s.reopenDone
	s.reopenMu.Unlock()
	if !reopening {
		return nil
	}
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Minute):
	}
	return s.Unavailable()
}

// Reopens counts the times the database was reopened after DuckDB
// invalidated it.
func (s *Store) Reopens() int64 { return s.reopens.Load() }

// invalidate starts one reopen for cause, unless one runs already.
func (s *Store) invalidate(cause error) {
	s.reopenMu.Lock()
	defer s.reopenMu.Unlock()
	if s.reopening || s.opts.ReadOnly {
		return
	}
	s.reopening, s.down = true, firstLine(cause)
	s.reopenDone = make(chan struct{})
	s.log.Error("warehouse invalidated by DuckDB; reopening it (committed files are in its log)", "path", s.path, "err", s.down)
	go s.reopen()
}

// reopen closes the invalidated database and opens the file again, until
// that works or the store is closed. DuckDB does not checkpoint an
// invalidated database when it closes (AttachedDatabase::Close), and the
// open replays the write-ahead log, so the state is exactly what was
// committed. Writers wait meanwhile; readers get ErrUnavailable.
func (s *Store) reopen() {
	defer close(s.reopenDone)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	wait := time.Second
	for {
		if !s.closeAndWait() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		db, err := s.openDB(ctx)
		if err == nil {
			s.handle.Store(db)
			err = s.loadCaches(ctx)
		}
		cancel()
		if err == nil {
			break
		}
		s.log.Error("warehouse reopen failed; trying again", "path", s.path, "in", wait, "err", firstLine(err))
		select {
		case <-s.closed:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
	s.reopens.Add(1)
	s.reopenMu.Lock()
	s.reopening, s.down = false, nil
	s.reopenMu.Unlock()
	s.log.Info("warehouse reopened", "path", s.path)
}

// closeAndWait closes the database in use and waits until its last
// connection is gone; false if the store was closed meanwhile. Two
// instances of DuckDB on one file would corrupt it, and the old one lives
// until its last connection (a load's, an API read's) is returned. Each
// fails at its next statement, the database being invalidated, so this is
// short.
func (s *Store) closeAndWait() bool {
	old := s.db()
	_ = old.Close()
	for old.Stats().OpenConnections > 0 {
		select {
		case <-s.closed:
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	return true
}

// firstLine keeps an error's first line: DuckDB appends a stack trace to
// fatal and internal errors.
func firstLine(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "\n"); i >= 0 {
		return errors.New(strings.TrimSpace(msg[:i]))
	}
	return err
}

// checkpoint writes what the log holds into the database file, after a
// file is durable, once the log has grown past Options.CheckpointAfter. It failing
// leaves the file applied (its COMMIT synced the log); a failure that
// invalidates the database reopens it.
func (s *Store) checkpoint(ctx context.Context, conn *sql.Conn) {
	if info, err := os.Stat(s.path + ".wal"); err != nil || info.Size() < s.opts.CheckpointAfter {
		return
	}
	_, err := conn.ExecContext(ctx, "CHECKPOINT")
	if err != nil && !invalidates(err) {
		// Another writer's open transaction (a user's edit) defers it to
		// the next file, or to the checkpoint DuckDB makes when it closes.
		s.log.Debug("checkpoint deferred", "path", s.path, "err", firstLine(err))
	}
	_ = s.Check(err)
}

// Ping reports whether the warehouse answers a query now (GET /readyz):
// not while it is being reopened after a storage failure.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.Unavailable(); err != nil {
		return err
	}
	var one int
	if err := s.db().QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("warehouse: %w", s.storageError(err))
	}
	return nil
}

// MemoryUsage is what DuckDB's buffer manager holds now, in bytes (its
// pool: the read cache and a load's working memory); -1 if unknown.
func (s *Store) MemoryUsage(ctx context.Context) int64 {
	var used sql.NullInt64
	if err := s.db().QueryRowContext(ctx, "SELECT sum(memory_usage_bytes)::BIGINT FROM duckdb_memory()").Scan(&used); err != nil || !used.Valid {
		return -1
	}
	return used.Int64
}
