package warehouse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
)

// Backup writes a copy of the warehouse to path, a new DuckDB file, as of
// one moment: DuckDB's COPY FROM DATABASE runs in one transaction, so a
// file's commit is in the copy whole or not at all, with its ingest row.
// Loads and reads go on meanwhile.
func (s *Store) Backup(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("warehouse: backup: %s exists", path)
	}
	conn, err := s.db().Conn(ctx)
	if err != nil {
		return fmt.Errorf("warehouse: backup: %w", s.storageError(err))
	}
	defer conn.Close()
	var source string
	if err := conn.QueryRowContext(ctx, "SELECT current_database()").Scan(&source); err != nil {
		return fmt.Errorf("warehouse: backup: %w", s.storageError(err))
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	name := "backup_" + hex.EncodeToString(suffix)
	if _, err := conn.ExecContext(ctx, "ATTACH "+quote(path)+" AS "+name); err != nil {
		return fmt.Errorf("warehouse: backup: %w", s.storageError(err))
	}
	steps := []string{
		"COPY FROM DATABASE " + ident(source) + " TO " + name,
		"CHECKPOINT " + name, // one file: nothing left in its log
	}
	for _, step := range steps {
		if _, err = conn.ExecContext(ctx, step); err != nil {
			break
		}
	}
	if _, derr := conn.ExecContext(context.Background(), "DETACH "+name); err == nil {
		err = derr
	}
	if err != nil {
		os.Remove(path)
		os.Remove(path + ".wal")
		return fmt.Errorf("warehouse: backup: %w", s.storageError(err))
	}
	return nil
}
