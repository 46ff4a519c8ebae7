package warehouse

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/duckdb/duckdb-go/v2"

	"github.com/flatfiler/flatfiler/internal/failpoint"
)

// DefaultPath is where the warehouse lives unless told otherwise.
const DefaultPath = "data/warehouse.duckdb"

// Options tune DuckDB. Zero values take defaults.
type Options struct {
	ReadOnly bool
	// MemoryLimit caps DuckDB's buffer manager (e.g. "128MB"); past it DuckDB
	// spills to TempDir rather than grow.
	MemoryLimit string
	// CommitMemoryLimit is DuckDB's limit while a load commits (default:
	// MemoryLimit). The commit's sort of the file's transactions into key
	// order is most of its time, and the parser's memory is idle by then.
	// But what DuckDB holds beside its pool during that insert grows with
	// the file: at 256 MB a 1 GiB file peaked at 446-484 MB and a 4 GiB
	// one at 648 MB (82.6 s, against 98.7 s and 483 MB at 128 MB), so
	// flatfiler ingest and serve leave it at MemoryLimit unless told.
	CommitMemoryLimit string
	// ReadMemoryLimit is DuckDB's limit while no file loads (default:
	// MemoryLimit): its pool is then the reads' cache. The reporting API's
	// reads find their blocks there instead of loading (and checksumming)
	// them again; a load lowers the limit to MemoryLimit while it lasts,
	// DuckDB evicting what does not fit.
	ReadMemoryLimit string
	Threads         int
	TempDir         string // default: PATH.tmp beside the database
	// AccountDirectory keeps every account in memory, by owner, for the
	// reporting API's per-user reads (about 130 bytes an account; see
	// accountDirectory). Serve sets it; ingest and sql need not.
	AccountDirectory bool
	// CheckpointAfter is the log's size past which a load checkpoints after
	// its commit; default 16 MB, DuckDB's own threshold, which DuckDB may no
	// longer apply at COMMIT (see openDB).
	CheckpointAfter int64
	// Logger reports reopens; default slog.Default().
	Logger *slog.Logger
	// Faults are the process's named fault points, for crash tests.
	Faults *failpoint.Set
	// MaxConcurrentReads bounds the reads AdmitRead lets in at once; 0:
	// one per core.
	MaxConcurrentReads int
}

// Store is an open warehouse.
type Store struct {
	path string
	opts Options
	log  *slog.Logger
	// handle is the database in use. After DuckDB invalidated it (a fatal
	// error: a failed checkpoint, an internal error) it is closed and
	// replaced by a fresh open of the same file; see reopen.
	handle atomic.Pointer[sql.DB]
	// writeMu orders a file's commit and a rule's re-tagging: both rewrite
	// transactions, and DuckDB would fail one of two concurrent writers of
	// the same rows.
	writeMu sync.Mutex
	// committing counts loads applying a file (see Committing).
	committing atomic.Int32
	// readGate is held shared by API reads (Reading) and exclusively by a
	// file's COMMIT, and by a whole commit run again after DuckDB ran out of
	// memory; commitRetries counts those.
	readGate      sync.RWMutex
	commitRetries atomic.Int64
	// readSlots and commitSlots are AdmitRead's places: one per core, and
	// one while a file commits.
	readSlots, commitSlots chan struct{}
	exportMu               sync.Mutex // one Export at a time
	// loadsMu guards loads, the loads begun and not ended: while there is
	// one DuckDB's limit is MemoryLimit, else ReadMemoryLimit.
	loadsMu sync.Mutex
	loads   int
	// reopening is set from the moment the database is found invalidated
	// until a fresh open has replaced it; down says why, for callers.
	reopenMu   sync.Mutex
	reopening  bool
	down       error
	reopens    atomic.Int64
	closed     chan struct{}
	closeOnce  sync.Once
	reopenDone chan struct{} // closed when the running reopen ends
	// fault, set by tests only, fails a load's statement before it runs.
	fault func(stmt string) error
	// enrichments caches the enrichments table for the API's reads.
	enrichments enrichmentCache
	// edited holds (partner, account) with transaction edits; manualNetworth
	// (partner, user) with manual networth accounts.
	edited, manualNetworth presence
	// accountEdited holds (partner, account) with a user's name or display
	// type (account_edits).
	accountEdited presence
	// directory holds the accounts by owner; nil unless
	// Options.AccountDirectory.
	directory *accountDirectory
}

// db is the database in use.
func (s *Store) db() *sql.DB { return s.handle.Load() }

// Open opens (and if writable, creates and migrates) the warehouse at path.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if opts.MemoryLimit == "" {
		opts.MemoryLimit = "128MB"
	}
	if opts.CommitMemoryLimit == "" {
		opts.CommitMemoryLimit = opts.MemoryLimit
	}
	if opts.ReadMemoryLimit == "" {
		opts.ReadMemoryLimit = opts.MemoryLimit
	}
	if opts.TempDir == "" {
		opts.TempDir = path + ".tmp"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CheckpointAfter <= 0 {
		opts.CheckpointAfter = 16 << 20
	}
	if opts.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("open warehouse %s: %w", path, err)
		}
	} else if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("open warehouse: %w", err)
		}
	}
	slots := opts.MaxConcurrentReads
	if slots <= 0 {
		slots = runtime.GOMAXPROCS(0)
	}
	s := &Store{path: path, opts: opts, log: opts.Logger, closed: make(chan struct{}),
		readSlots: make(chan struct{}, slots), commitSlots: make(chan struct{}, 1)}
	db, err := s.openDB(ctx)
	if err != nil {
		return nil, err
	}
	s.handle.Store(db)
	if !opts.ReadOnly {
		// What a crash left: the database's lock says no one reads it.
		if err := os.RemoveAll(s.ResultSpool()); err != nil {
			db.Close()
			return nil, fmt.Errorf("open warehouse %s: result spool: %w", path, err)
		}
	}
	if opts.AccountDirectory {
		s.directory = &accountDirectory{}
	}
	if err := s.loadCaches(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open warehouse %s: %w", path, err)
	}
	return s, nil
}

// openDB opens the database file with the store's settings and, if
// writable, applies the schema and upgrades. DuckDB replays the file's
// write-ahead log here: every transaction whose COMMIT returned is back.
func (s *Store) openDB(ctx context.Context) (*sql.DB, error) {
	opts := s.opts
	dsn := s.path
	if opts.ReadOnly {
		dsn += "?access_mode=READ_ONLY"
	}
	// The database's settings are global: they are made on the first
	// connection. Later connections (the pool grows with concurrent API
	// requests) only repeat the session's time zone; DuckDB refuses to set
	// temp_directory again once a load has spilled there.
	global := []string{
		fmt.Sprintf("SET memory_limit = '%s'", s.idleMemoryLimit()),
		fmt.Sprintf("SET temp_directory = %s", quote(opts.TempDir)),
		// File order is kept through seq columns, not through insertion order.
		"SET preserve_insertion_order = false",
		// Hand freed memory back to the system soon, so the process's
		// footprint stays near the limit rather than the limit plus caches.
		"SET allocator_flush_threshold = '16MB'",
		"SET allocator_background_threads = true",
		// A COMMIT must be the moment a file becomes durable, and nothing
		// else. When DuckDB 1.4 decides to checkpoint at a commit (its WAL
		// would pass checkpoint_threshold, 16 MB by default: every file of
		// any size) it skips the WAL, makes the transaction visible, and
		// then checkpoints; if that checkpoint fails (a full disk) readers
		// have seen rows that exist nowhere on disk, and the failed
		// checkpoint invalidates the database (duckdb v1.4.5,
		// src/transaction/duck_transaction_manager.cpp, CommitTransaction;
		// src/storage/storage_manager.cpp, CreateCheckpoint rethrows every
		// error as a FatalException). With the threshold out of reach every
		// COMMIT writes and syncs the WAL first: if that fails, DuckDB
		// truncates the WAL and rolls back (DuckTransaction::WriteToWAL,
		// RevertCommit), so readers keep the state before the file. Large
		// appends are written to the database file as they are made, and the
		// WAL records only where (ROW_GROUP_DATA), so the WAL stays small.
		// Loads then checkpoint explicitly, after the file is durable.
		"SET checkpoint_threshold = '1TB'",
	}
	if opts.Threads > 0 {
		global = append(global, fmt.Sprintf("SET threads = %d", opts.Threads))
	}
	var configure sync.Once
	init := func(execer driver.ExecerContext) error {
		var err error
		configure.Do(func() {
			for _, s := range global {
				if _, err = execer.ExecContext(context.Background(), s, nil); err != nil {
					err = fmt.Errorf("%s: %w", s, err)
					return
				}
			}
		})
		if err != nil {
			return err
		}
		if _, err := execer.ExecContext(context.Background(), "SET TimeZone = 'UTC'", nil); err != nil {
			return fmt.Errorf("SET TimeZone: %w", err)
		}
		if opts.ReadOnly {
			return standInLateTables(execer)
		}
		return nil
	}
	connector, err := duckdb.NewConnector(dsn, init)
	if err != nil {
		return nil, fmt.Errorf("open warehouse %s: %w", s.path, err)
	}
	db := sql.OpenDB(connector)
	if opts.ReadOnly {
		return db, nil
	}
	_, err = db.ExecContext(ctx, schema)
	if err == nil {
		// DuckDB holds the file's lock now: no other process uses the spill
		// directory, and files left there belong to a process that died.
		err = removeSpillLeftovers(opts.TempDir)
	}
	if err == nil {
		err = dropArrowViews(ctx, db)
	}
	if err == nil {
		err = moveEnrichmentColumns(ctx, db)
	}
	if err == nil {
		err = assignAccountKeys(ctx, db)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate warehouse %s: %w", s.path, err)
	}
	return db, nil
}

// dropArrowViews drops the views loads of earlier builds left in the
// warehouse: duckdb-go registers Arrow streams as persistent views of the
// current database, and those builds registered them in the warehouse.
// Their streams were freed long ago; reading one crashed the process.
func dropArrowViews(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, `SELECT view_name FROM duckdb_views()
		WHERE database_name = current_database() AND schema_name = 'main' AND view_name LIKE 'arrow\_v\_%' ESCAPE '\'`)
	if err != nil {
		return fmt.Errorf("stale arrow views: %w", err)
	}
	var names []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return fmt.Errorf("stale arrow views: %w", err)
		}
		names = append(names, name)
	}
	rows.Close()
	for _, name := range names {
		if _, err := db.ExecContext(ctx, `DROP VIEW IF EXISTS main."`+name+`"`); err != nil {
			return fmt.Errorf("stale arrow views: %w", err)
		}
	}
	return nil
}

// removeSpillLeftovers deletes DuckDB's temporary files in dir. DuckDB
// deletes its own when it closes, but a process killed mid-load leaves
// them (gigabytes for a large file), and the next open does not.
func removeSpillLeftovers(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("spill directory: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "duckdb_temp_") {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("spill directory: %w", err)
			}
		}
	}
	return nil
}

// loadCaches fills what the API keeps beside the warehouse.
func (s *Store) loadCaches(ctx context.Context) error {
	if err := s.edited.load(ctx, s.db(), "SELECT DISTINCT partner_id, account_id FROM transaction_edits"); err != nil {
		return err
	}
	if err := s.accountEdited.load(ctx, s.db(), "SELECT DISTINCT partner_id, account_id FROM account_edits"); err != nil {
		return err
	}
	if err := s.manualNetworth.load(ctx, s.db(), "SELECT DISTINCT partner_id, partner_customer_id FROM networth_accounts"); err != nil {
		return err
	}
	if s.directory != nil {
		if err := s.directory.load(ctx, s.db()); err != nil {
			return err
		}
	}
	return s.enrichments.preload(ctx, s.db())
}

// moveEnrichmentColumns upgrades warehouses of the first enrichment build,
// which kept each transaction's nickname, tag, tag_reason and merchant_key
// in transactions itself: they move to enrichments, one row per distinct
// decision, and the columns go.
func moveEnrichmentColumns(ctx context.Context, db *sql.DB) error {
	var left, marker int
	err := db.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE column_name = 'merchant_key')
		FROM duckdb_columns() WHERE database_name = current_database() AND schema_name = 'main'
		AND table_name = 'transactions' AND column_name IN ('nickname', 'tag', 'tag_reason', 'merchant_key')`).Scan(&left, &marker)
	if err != nil || left == 0 {
		return err
	}
	// DuckDB cannot alter a table in the transaction that updated it: the
	// rows move in one transaction, then the columns go, merchant_key first,
	// so a move is never repeated and columns left by a stop go next time.
	if marker > 0 {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for _, stmt := range []string{
			"INSERT INTO enrichments " + newEnrichments(
				"(SELECT DISTINCT nickname, tag, tag_reason, merchant_key FROM transactions WHERE tag_reason IS NOT NULL)"),
			"UPDATE transactions t SET enrichment_id = e.enrichment_id FROM enrichments e WHERE " + sameEnrichment("e", "t"),
		} {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("move enrichment columns: %w", err)
			}
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("move enrichment columns: %w", err)
		}
	}
	for _, column := range []string{"merchant_key", "nickname", "tag", "tag_reason"} {
		if _, err := db.ExecContext(ctx, "ALTER TABLE transactions DROP COLUMN IF EXISTS "+column); err != nil {
			return fmt.Errorf("move enrichment columns: %w", err)
		}
	}
	return nil
}

// keyBatchRows bounds one UPDATE of assignAccountKeys: DuckDB holds a
// transaction's updated values in memory until it checkpoints.
const keyBatchRows = 1 << 20

// assignAccountKeys upgrades warehouses of builds before account_key and
// owner_hash: each account gets a key after the highest given and its
// owner's hash, and its balances and transactions copy the key. Batches
// commit one by one and only fill NULL keys, so an interrupted upgrade
// resumes at the next open.
func assignAccountKeys(ctx context.Context, db *sql.DB) error {
	// Most opens find every account done: skip the upgrade's scan of all
	// transactions then.
	var keyless, hashless int
	err := db.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE account_key IS NULL), count(*) FILTER (WHERE owner_hash IS NULL)
FROM accounts`).Scan(&keyless, &hashless)
	if err != nil {
		return fmt.Errorf("assign account keys: %w", err)
	}
	if keyless > 0 {
		if err := keyAccounts(ctx, db); err != nil {
			return err
		}
	}
	if hashless > 0 {
		_, err = db.ExecContext(ctx, `UPDATE accounts SET owner_hash = `+ownerHash("partner_id", "partner_customer_id")+` WHERE owner_hash IS NULL`)
		if err != nil {
			return fmt.Errorf("assign owner hashes: %w", err)
		}
	}
	for _, table := range []string{"balances", "transactions"} {
		if err := copyAccountKeys(ctx, db, table); err != nil {
			return err
		}
	}
	return nil
}

// keyAccounts gives accounts without a key one.
func keyAccounts(ctx context.Context, db *sql.DB) error {
	// Keys follow where each account's transactions first lie in the table,
	// so zone maps on the key are as narrow as the table's order allows; an
	// account without transactions goes with its owner's first, so a user's
	// keys stay near each other.
	_, err := db.ExecContext(ctx, `UPDATE accounts SET account_key = n.account_key
FROM (SELECT partner_id, account_id,
    (SELECT coalesce(max(account_key), 0) FROM accounts) + row_number() OVER (ORDER BY place NULLS LAST, stored) AS account_key
  FROM (SELECT a.partner_id, a.account_id, a.rowid AS stored,
      coalesce(f.first, min(f.first) OVER (PARTITION BY a.partner_id, a.partner_customer_id)) AS place
    FROM accounts a LEFT JOIN (SELECT partner_id, account_id, min(rowid) AS first FROM transactions GROUP BY ALL) f
      USING (partner_id, account_id)
    WHERE a.account_key IS NULL)) n
WHERE accounts.partner_id = n.partner_id AND accounts.account_id = n.account_id`)
	if err != nil {
		return fmt.Errorf("assign account keys: %w", err)
	}
	return nil
}

// copyAccountKeys gives table's rows without a key their account's, in
// batches by rowid.
func copyAccountKeys(ctx context.Context, db *sql.DB, table string) error {
	var missing bool
	var last int64
	err := db.QueryRowContext(ctx, `SELECT count(*) > 0, coalesce(max(rowid), 0) FROM `+table+` WHERE account_key IS NULL`).Scan(&missing, &last)
	if err != nil {
		return fmt.Errorf("assign account keys to %s: %w", table, err)
	}
	for lo := int64(0); missing && lo <= last; lo += keyBatchRows {
		_, err := db.ExecContext(ctx, `UPDATE `+table+` SET account_key = a.account_key FROM accounts a
WHERE `+table+`.rowid >= ? AND `+table+`.rowid < ? AND `+table+`.account_key IS NULL
  AND a.partner_id = `+table+`.partner_id AND a.account_id = `+table+`.account_id`, lo, lo+keyBatchRows)
		if err == nil {
			_, err = db.ExecContext(ctx, "CHECKPOINT")
		}
		if err != nil {
			return fmt.Errorf("assign account keys to %s: %w", table, err)
		}
	}
	return nil
}

// Reading marks a read of the warehouse until done is called. Every read
// that must not see a file before it is durable holds it (the API's, and
// SQL for operators): no read begins during a file's COMMIT (see
// Load.commit), and a commit that ran out of DuckDB's memory runs again
// with no reads at all. Both wait for the reads under way, and new ones
// wait for them. A caller that will write (EditTransaction, networth
// accounts, rules) must not hold it: the commit holds the write lock while
// it waits.
func (s *Store) Reading() (done func()) {
	s.readGate.RLock()
	return s.readGate.RUnlock
}

// AdmitRead is the read gate of the reporting API's per-user reads: it
// admits at most MaxConcurrentReads at once (serve runs DuckDB one thread
// per query: more at once only share the cores and DuckDB's memory limit,
// while the rest wait here in order), holds Reading, and while a file is
// being committed lets one read in at a time (with four, a nightly file's
// commit failed for DuckDB memory under make bench-api). ok is false when
// ctx ended first; else release ends the read.
func (s *Store) AdmitRead(ctx context.Context) (release func(), ok bool) {
	if !take(ctx, s.readSlots) {
		return nil, false
	}
	done := s.Reading()
	if !s.Committing() {
		return func() { done(); <-s.readSlots }, true
	}
	if !take(ctx, s.commitSlots) {
		done()
		<-s.readSlots
		return nil, false
	}
	return func() { <-s.commitSlots; done(); <-s.readSlots }, true
}

// take takes a place in slots, or gives up when ctx ends first.
func take(ctx context.Context, slots chan struct{}) bool {
	select {
	case slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Store) exclusively(f func() error) error {
	s.readGate.Lock()
	defer s.readGate.Unlock()
	return f()
}

// CommitRetries counts commits run again, alone, after DuckDB ran out of
// memory.
func (s *Store) CommitRetries() int64 { return s.commitRetries.Load() }

// Committing reports whether a load is applying a file now. A commit needs
// most of DuckDB's memory limit, and every read pins blocks within the same
// limit: readers that can wait (the reporting API) let fewer in meanwhile.
func (s *Store) Committing() bool { return s.committing.Load() > 0 }

// DB exposes the database for queries (the sql command, tests, the API).
func (s *Store) DB() *sql.DB { return s.db() }

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Close checkpoints and closes the warehouse.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	s.reopenMu.Lock()
	done := s.reopenDone
	s.reopenMu.Unlock()
	if done != nil {
		<-done
	}
	return s.db().Close()
}

// IngestReport returns the report stored with the file a job applied, if
// the job's file was committed.
func (s *Store) IngestReport(ctx context.Context, jobID string) ([]byte, bool, error) {
	var report string
	err := s.db().QueryRowContext(ctx, "SELECT report::VARCHAR FROM ingests WHERE job_id = ?", jobID).Scan(&report)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("warehouse: ingest of job %s: %w", jobID, s.Check(err))
	}
	return []byte(report), true, nil
}

// quote makes a SQL string literal.
// ident quotes an SQL identifier.
func ident(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

func quote(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}

// standInLateTables gives a read-only connection empty temporary tables for
// the late tables its warehouse lacks (see lateTables).
func standInLateTables(execer driver.ExecerContext) error {
	for name, ddl := range lateTables {
		_, err := execer.ExecContext(context.Background(), "SELECT 1 FROM main."+name+" LIMIT 0", nil)
		if err == nil {
			continue
		}
		temp := strings.Replace(ddl, "CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE IF NOT EXISTS", 1)
		if _, err := execer.ExecContext(context.Background(), temp, nil); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}
