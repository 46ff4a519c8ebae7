// Package backup copies a server's data directory while it runs, into a
// directory that is itself a data directory: serving it (flatfiler serve
// --data BACKUP) is the restore.
//
// The order makes it consistent without stopping anything: the server's
// own files first (partners, analysts, host keys, bans, jobs with their
// spooled files and archive, batches, harvests, the SFTP folders), the
// warehouse last, as one DuckDB snapshot. A job that finished while its
// record was being copied is in the snapshot's ingest ledger, and the
// restored server settles it from there (a job applied is never applied
// again); a job that finished after the snapshot is queued in the copy and
// runs again on the restored server, once. The restore loses only what
// arrived after the backup.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flatfiler/flatfiler/internal/durable"
)

// Warehouse writes a consistent copy of the warehouse to a new file.
type Warehouse interface {
	Backup(ctx context.Context, path string) error
}

// WarehouseFile is the warehouse's name in a data directory.
const WarehouseFile = "warehouse.duckdb"

// Report says what a backup copied.
type Report struct {
	Out       string  `json:"out"`
	Files     int     `json:"files"`
	Bytes     int64   `json:"bytes"`
	Warehouse int64   `json:"warehouse_bytes"`
	Seconds   float64 `json:"seconds"`
}

// skipped are the names at the data directory's top not copied: the
// warehouse and DuckDB's files beside it (the snapshot replaces them), and
// the running server's admin token.
func skipped(name string) bool {
	return strings.HasPrefix(name, WarehouseFile) || name == "admin.json"
}

// Run copies the data directory data into out, which must not exist or be
// empty.
func Run(ctx context.Context, data, out string, wh Warehouse) (*Report, error) {
	start := time.Now()
	if entries, err := os.ReadDir(out); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("backup: %s is not empty: a backup goes into a new directory", out)
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	rep := &Report{Out: out}
	err := filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // gone while walking: a job moved its file on
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rel, err := filepath.Rel(data, path)
		if err != nil || rel == "." {
			return err
		}
		if !strings.Contains(rel, string(filepath.Separator)) && skipped(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		target := filepath.Join(out, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm())
		case info.Mode().IsRegular():
			n, err := copyFile(path, target, info.Mode().Perm())
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			rep.Files++
			rep.Bytes += n
			return err
		}
		return nil // sockets and the like
	})
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	snapshot := filepath.Join(out, WarehouseFile)
	if err := wh.Backup(ctx, snapshot); err != nil {
		return nil, fmt.Errorf("backup: the warehouse: %w", err)
	}
	if info, err := os.Stat(snapshot); err == nil {
		rep.Warehouse = info.Size()
	}
	if err := durable.SyncDir(out); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// copyFile copies a file and syncs the copy.
func copyFile(from, to string, perm fs.FileMode) (int64, error) {
	src, err := os.Open(from)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(dst, src)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	return n, err
}
