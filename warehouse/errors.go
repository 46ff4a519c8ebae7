package warehouse

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/duckdb/duckdb-go/v2"
)

// ErrStorage marks a load that failed for the warehouse's storage, not for
// the file: a full disk or spill directory, an I/O error, DuckDB out of
// memory or invalidated. Nothing of the file was applied, and the same file
// applies once the storage recovers: callers retry it.
var ErrStorage = errors.New("storage failure")

// StorageError is an ErrStorage with what a partner or an operator can
// act on.
type StorageError struct {
	Reason string // one line, without DuckDB's stack traces
	Err    error
}

func (e *StorageError) Error() string        { return e.Reason }
func (e *StorageError) Unwrap() error        { return e.Err }
func (e *StorageError) Is(target error) bool { return target == ErrStorage }

// spillUsage finds DuckDB's "(88.1 MiB/88.1 MiB used)" in an out-of-memory
// error caused by max_temp_directory_size; unwritable, the file in "Could
// not write file".
var (
	spillUsage = regexp.MustCompile(`\(([0-9.]+ [KMGTP]?i?B)/([0-9.]+ [KMGTP]?i?B) used\)`)
	unwritable = regexp.MustCompile(`Could not write file "([^"]+)"`)
)

// storageError classifies an error of a load's statement: storage failures
// become a *StorageError saying what failed, in words; the rest (a
// constraint the data broke, a bug in a statement) stay as they are. An
// error that invalidated the database starts its reopen.
func (s *Store) storageError(err error) error {
	if err == nil {
		return nil
	}
	err = s.Check(err)
	if errors.Is(err, ErrStorage) {
		return err
	}
	first := firstLine(err).Error()
	var e *duckdb.Error
	isDuck := errors.As(err, &e)
	switch {
	case errors.Is(err, ErrUnavailable):
		return &StorageError{Reason: first, Err: err}
	case isDuck && e.Type == duckdb.ErrorTypeOutOfMemory && strings.Contains(err.Error(), "max_temp_directory_size"):
		reason := fmt.Sprintf("spill directory %s is full", s.opts.TempDir)
		if m := spillUsage.FindStringSubmatch(err.Error()); m != nil {
			reason += fmt.Sprintf(" (%s used, limit %s)", m[1], m[2])
		}
		return &StorageError{Reason: reason + ": the file's staged rows did not fit beside DuckDB's memory limit; free space there (or raise max_temp_directory_size)", Err: err}
	case strings.Contains(first, "No space left on device"):
		reason := "the server's disk is full"
		if m := unwritable.FindStringSubmatch(first); m != nil {
			reason += " (DuckDB could not write " + filepath.Base(m[1]) + ")"
		}
		return &StorageError{Reason: reason, Err: err}
	case isDuck && e.Type == duckdb.ErrorTypeOutOfMemory:
		limit := s.opts.MemoryLimit
		if s.opts.CommitMemoryLimit != limit {
			limit += ", " + s.opts.CommitMemoryLimit + " while a file commits"
		}
		return &StorageError{Reason: fmt.Sprintf("DuckDB ran out of memory (limit %s): %s", limit, first), Err: err}
	case isDuck && (e.Type == duckdb.ErrorTypeIO || invalidates(err)):
		return &StorageError{Reason: "warehouse storage failed: " + first, Err: err}
	}
	return err
}
