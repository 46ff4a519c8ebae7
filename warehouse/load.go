package warehouse

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/bits-and-blooms/bloom/v3"
	"github.com/duckdb/duckdb-go/v2"

	"github.com/flatfiler/flatfiler/internal/durable"
	"github.com/flatfiler/flatfiler/internal/failpoint"
	"github.com/flatfiler/flatfiler/stages"
	"github.com/flatfiler/flatfiler/stages/enrich"
)

// LoadOptions describe the file being applied.
type LoadOptions struct {
	Partner string
	AsOf    time.Time // business date of the balance snapshots
	// Source is the file's name, kept on every row for audits. A load of
	// several batches names each one's rows with Part.
	Source string
	// MaxRejections caps how many rejections Apply returns; all are counted.
	MaxRejections int
	// Enrichments are the results the rows' EnrichmentIDs number; nil when
	// enrichment is off.
	Enrichments *enrich.Results
	// Profiles are stored in the load's transaction, after its records: the
	// fields of the API's user writes that files do not carry.
	Profiles []Profile
	// CloseAccounts are stored accounts of the partner to mark closed
	// (state), in the load's transaction: a pull harvest's accounts that
	// the partner's answer left out. A later upsert opens them again.
	CloseAccounts []string
	// ProtectBefore, if set, keeps stored transactions posted before it
	// as they are: the load's events for them (upserts and deletes) are
	// dropped. A pull harvest never touches what is older than 180 days.
	ProtectBefore time.Time
}

// Load applies one file in two phases, so that memory stays flat whatever
// the file's size and the file is applied whole or not at all:
//
//   - Apply stages each batch's events (upserts and deletes, each with its seq)
//     in an in-memory database private to the load, every batch committed on
//     its own. Nothing the warehouse's readers see changes.
//   - Commit resolves the file's actions set-based over everything staged
//     (last event per key wins; a delete takes what came before it) and
//     applies the result to the warehouse in one transaction.
//
// One transaction over the whole file would be simpler, but DuckDB 1.4 keeps a
// transaction's appends to tables in its buffer pool until commit; a 4 GiB
// file failed with "failed to pin block" at a 128 MB limit.
type Load struct {
	store   *Store
	conn    *sql.Conn
	arrow   *duckdb.Arrow
	opts    LoadOptions
	started time.Time
	lit     map[string]string
	done    bool
	// seen holds the transaction keys staged so far. A key it may have seen
	// is a suspect: the file may hold it twice, which Commit resolves for
	// suspects only instead of grouping every staged transaction.
	seen     *bloom.BloomFilter
	suspects bool
	// What the file staged, to skip statements with nothing to do.
	users, accounts, deletes bool
	// hadTransactions: the partner had stored transactions before this file;
	// if not, Commit need not look for rows to replace.
	hadTransactions bool
	trace           bool // FLATFILER_TRACE_SQL: print each statement's duration
	// warehouse is the warehouse's database name, quoted: the connection's
	// current database but while views are made (see views).
	warehouse string
	// Rows stage the number of their enrichment result instead of four
	// strings: a file has few results (one per merchant and tag), staged
	// at commit, or with a batch once many pile up. usedFixed marks the
	// dictionary's results (by number) that rows used since last staged.
	usedFixed []bool
	// userRules: Commit found rules of the partner's users to apply.
	userRules bool
	// userNicknames: some staged transaction carries the user's nickname
	// (a push batch's), which Commit keeps as the user's edit.
	userNicknames bool
	// parts name the sources of a load of several batches, by the first
	// seq of each; empty, every row is opts.Source's.
	parts []part
}

type part struct {
	first  stages.Seq
	source string
}

// Part says that the rows staged from seq first on come from source (a
// push batch of a load that applies several at once), until the next
// Part. Rows keep their own source in source_file.
func (l *Load) Part(first stages.Seq, source string) {
	l.parts = append(l.parts, part{first, source})
}

// sourceRef matches where a statement writes a row's source: {SRC seq}
// names the column holding the row's seq.
var sourceRef = regexp.MustCompile(`\{SRC ([a-z_.]+)\}`)

// sourceOf is the SQL for the source of the row whose seq is in col.
func (l *Load) sourceOf(col string) string {
	if len(l.parts) == 0 {
		return quote(l.opts.Source)
	}
	var b strings.Builder
	b.WriteString("CASE")
	for i := len(l.parts) - 1; i > 0; i-- {
		fmt.Fprintf(&b, " WHEN %s >= %d THEN %s", col, l.parts[i].first, quote(l.parts[i].source))
	}
	fmt.Fprintf(&b, " ELSE %s END", quote(l.parts[0].source))
	return b.String()
}

// takeEnrichments returns the results to stage: those the enrichers made
// since the last call, and the dictionary's that rows used since then.
func (l *Load) takeEnrichments() []*enrich.Result {
	results := l.opts.Enrichments
	if results == nil {
		return nil
	}
	out := results.Take()
	for id, used := range l.usedFixed {
		if used {
			if r := results.Fixed(uint32(id)); r != nil {
				out = append(out, r)
			}
			l.usedFixed[id] = false
		}
	}
	return out
}

// markUsed notes the dictionary's results rows use; made results are
// staged whether used or not.
func (l *Load) markUsed(rows []stages.Transaction) {
	if l.opts.Enrichments == nil {
		return
	}
	for i := range rows {
		id := rows[i].EnrichmentID
		if l.opts.Enrichments.Fixed(id) != nil {
			if int(id) >= len(l.usedFixed) {
				l.usedFixed = append(l.usedFixed, make([]bool, int(id)+1-len(l.usedFixed))...)
			}
			l.usedFixed[id] = true
		}
	}
}

// stageEnrichmentsEvery is how many made results a load holds before it
// stages them with a batch rather than at commit.
var stageEnrichmentsEvery = 1 << 15

// Applied is what the warehouse decided about a batch beyond validation.
type Applied struct {
	Rejections []stages.Rejection // the first MaxRejections, in file order
	Rejected   stages.Totals      // Error counts per kind of rows rejected here
	Skipped    int64              // transactions of investment accounts
}

var loadCounter atomic.Int64

// Begin starts loading a file.
func (s *Store) Begin(ctx context.Context, opts LoadOptions) (*Load, error) {
	if err := s.awaitReopen(ctx); err != nil {
		return nil, fmt.Errorf("begin load: %w", s.storageError(err))
	}
	conn, err := s.db().Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin load: %w", s.storageError(err))
	}
	// DuckDB sets its spill limit, unless told one, to 90% of the space
	// free at the first spill and keeps it (TemporaryFileManager::
	// SetMaxSwapSpace, GetDefaultMax, in v1.4.5): after a full disk is
	// freed, a file retried would meet the old limit until a restart.
	// Resetting it measures the space free now. It fails, harmlessly, while
	// another load's spill is over the new figure.
	_, _ = conn.ExecContext(ctx, "RESET max_temp_directory_size")
	s.loadBegins(ctx, conn)
	n := loadCounter.Add(1)
	l := &Load{
		store: s, conn: conn, opts: opts, started: time.Now().UTC(),
		trace: os.Getenv("FLATFILER_TRACE_SQL") != "",
		// 8M keys at 0.1% false positives: 14 MB whatever the file's size; a
		// larger file only makes more suspects.
		seen: bloom.NewWithEstimates(8_000_000, 0.001),
	}
	l.lit = map[string]string{
		"{S}":   fmt.Sprintf("load_%d", n),
		"{P}":   quote(opts.Partner),
		"{D}":   "DATE " + quote(opts.AsOf.Format(time.DateOnly)),
		"{NOW}": "TIMESTAMPTZ " + quote(l.started.Format("2006-01-02 15:04:05.999999Z07:00")),
	}
	err = conn.Raw(func(dc any) error {
		a, err := duckdb.NewArrowFromConn(dc.(driver.Conn))
		l.arrow = a
		return err
	})
	if err == nil {
		// In memory: no log to write and sync, and past the memory limit
		// DuckDB spills it to its temp directory.
		err = l.exec(ctx, "ATTACH ':memory:' AS {S}")
	}
	if err == nil {
		err = l.exec(ctx, createStaging)
	}
	if err == nil {
		err = conn.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM transactions WHERE partner_id = ?), current_database()",
			opts.Partner).Scan(&l.hadTransactions, &l.warehouse)
		l.warehouse = ident(l.warehouse)
	}
	if err != nil {
		l.discard()
		return nil, fmt.Errorf("begin load: %w", s.storageError(err))
	}
	return l, nil
}

// The staging tables hold every event of the file as sent, with its seq.
const createStaging = `
CREATE TABLE {S}.users (
	seq BIGINT, line INTEGER, action VARCHAR, partner_customer_id VARCHAR, first_name VARCHAR,
	last_name VARCHAR, email VARCHAR, zip_code VARCHAR, user_experience VARCHAR);
CREATE TABLE {S}.accounts (
	seq BIGINT, line INTEGER, action VARCHAR, partner_customer_id VARCHAR, account_id VARCHAR,
	account_number VARCHAR, fi_name VARCHAR, nickname VARCHAR, account_type VARCHAR,
	account_class VARCHAR, account_experience VARCHAR);
CREATE TABLE {S}.balances (
	account_seq BIGINT, account_id VARCHAR, balance_type VARCHAR, amount DECIMAL(18,2), currency_code VARCHAR);
CREATE TABLE {S}.properties (
	account_seq BIGINT, account_id VARCHAR, property_type VARCHAR, property_value VARCHAR);
CREATE TABLE {S}.transactions (
	seq BIGINT, line INTEGER, action VARCHAR, account_id VARCHAR, transaction_id VARCHAR,
	transaction_type VARCHAR, posted_at TIMESTAMPTZ, posted_on DATE, originated_at TIMESTAMPTZ, originated_on DATE,
	amount DECIMAL(18,2), memo VARCHAR, original_name VARCHAR, check_number VARCHAR, enrichment_id INTEGER,
	hidden BOOLEAN, user_nickname VARCHAR);
CREATE TABLE {S}.enrichments (id INTEGER, nickname VARCHAR, tag VARCHAR, tag_reason VARCHAR, merchant_key VARCHAR);
CREATE TABLE {S}.suspects (account_id VARCHAR, transaction_id VARCHAR)`

func (l *Load) expand(stmt string) string {
	for k, v := range l.lit {
		stmt = strings.ReplaceAll(stmt, k, v)
	}
	return sourceRef.ReplaceAllStringFunc(stmt, func(ref string) string {
		return l.sourceOf(sourceRef.FindStringSubmatch(ref)[1])
	})
}

func (l *Load) exec(ctx context.Context, stmt string) error {
	stmt = l.expand(stmt)
	t0 := time.Now()
	var err error
	if fault := l.store.fault; fault != nil {
		err = fault(stmt)
	}
	if err == nil {
		_, err = l.conn.ExecContext(ctx, stmt)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(stmt), "\n")
	if l.trace {
		fmt.Fprintf(os.Stderr, "%8.1fms %.90s\n", float64(time.Since(t0).Microseconds())/1000, first)
	}
	if err != nil {
		return fmt.Errorf("warehouse: %s: %w", first, l.store.storageError(err))
	}
	return nil
}

// A staged batch is read through one-shot Arrow views of its record
// batches, one view per statement.
type staged struct {
	name string
	rec  arrow.RecordBatch
}

// execWith runs stmt with a fresh view for each staged batch it names.
func (l *Load) execWith(ctx context.Context, stmt string, views ...staged) error {
	release, err := l.views(views)
	if err != nil {
		return err
	}
	defer release()
	return l.exec(ctx, readAll(stmt, views))
}

// readAll makes each staged name in a statement read every column of its
// Arrow view. DuckDB 1.4 crashes when it pushes a projection down into an
// Arrow stream registered through the C API; a MATERIALIZED CTE reads the
// whole stream once and lives only as long as the statement.
func readAll(stmt string, views []staged) string {
	return viewName.ReplaceAllStringFunc(stmt, func(name string) string {
		for _, v := range views {
			if v.name == name {
				return fmt.Sprintf("(WITH m_%[1]s AS MATERIALIZED (SELECT * FROM {S}.arrow_%[1]s) SELECT * FROM m_%[1]s)", name)
			}
		}
		return name
	})
}

// viewName matches the names statements give staged batches (v_users, ...).
var viewName = regexp.MustCompile(`\bv_[a-z_]+\b`)

// queryWith runs a query with fresh views and calls scan for each row.
func (l *Load) queryWith(ctx context.Context, query string, scan func(*sql.Rows) error, views ...staged) error {
	release, err := l.views(views)
	if err != nil {
		return err
	}
	defer release()
	rows, err := l.conn.QueryContext(ctx, l.expand(readAll(query, views)))
	if err != nil {
		return fmt.Errorf("warehouse: %w", l.store.storageError(err))
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("warehouse: %w", l.store.storageError(err))
	}
	return nil
}

// duckdb-go registers a view with DuckDB's C API (duckdb_arrow_scan),
// which creates a persistent view in the connection's current database
// (Connection::CreateView with temporary false, duckdb v1.4.5
// src/main/capi/arrow-c.cpp): in the warehouse, that is a catalog write per
// batch, failing on a full disk, and a view left behind whose stream is
// freed (querying it crashed the process). The views are made in the
// load's staging database instead, current only while they are made.
func (l *Load) views(views []staged) (func(), error) {
	var releases []func()
	releaseAll := func() {
		for _, r := range releases {
			r()
		}
	}
	if len(views) == 0 {
		return releaseAll, nil
	}
	if err := l.exec(context.Background(), "USE {S}"); err != nil {
		return nil, err
	}
	defer func() { _ = l.exec(context.Background(), "USE "+l.warehouse) }()
	for _, v := range views {
		reader, err := array.NewRecordReader(v.rec.Schema(), []arrow.RecordBatch{v.rec})
		if err != nil {
			releaseAll()
			return nil, err
		}
		// The exported stream takes its own reference to the reader.
		release, err := l.arrow.RegisterView(reader, "arrow_"+v.name)
		if err != nil {
			reader.Release()
			releaseAll()
			return nil, fmt.Errorf("warehouse: stage %s: %w", v.name, err)
		}
		releases = append(releases, func() { release(); reader.Release() })
	}
	return releaseAll, nil
}

// Apply stages a batch of validated rows. Accounts and transactions whose
// user or account the warehouse does not know are rejected here, and
// transactions of investment accounts skipped; the warehouse is not changed
// until Commit.
func (l *Load) Apply(ctx context.Context, b *stages.Batch) (Applied, error) {
	var out Applied
	// Each kind's record is built once, and again only if the checks against
	// stored state drop some of its rows.
	accounts, txns := accountsRecord(b.Accounts), transactionsRecord(b.Transactions)
	defer func() { accounts.Release(); txns.Release() }()
	accountsDropped, txnsDropped, err := l.checkParents(ctx, b, accounts, txns, &out)
	if err != nil {
		return out, err
	}
	if accountsDropped {
		accounts.Release()
		accounts = accountsRecord(b.Accounts)
	}
	if txnsDropped {
		txns.Release()
		txns = transactionsRecord(b.Transactions)
	}
	l.markUsed(b.Transactions)
	for i := range b.Transactions {
		l.userNicknames = l.userNicknames || b.Transactions[i].UserNickname != ""
	}
	for _, u := range b.Users {
		l.users = true
		l.deletes = l.deletes || u.Action == stages.Delete
	}
	for _, a := range b.Accounts {
		l.accounts = true
		l.deletes = l.deletes || a.Action == stages.Delete
	}
	var steps []struct {
		stmt  string
		views []staged
	}
	step := func(stmt string, views ...staged) {
		steps = append(steps, struct {
			stmt  string
			views []staged
		}{stmt, views})
	}
	if len(b.Users) > 0 {
		rec := usersRecord(b.Users)
		defer rec.Release()
		step("INSERT INTO {S}.users SELECT * FROM v_users", staged{"v_users", rec})
	}
	if len(b.Accounts) > 0 {
		balances, properties := balancesRecord(b.Accounts), propertiesRecord(b.Accounts)
		defer balances.Release()
		defer properties.Release()
		step("INSERT INTO {S}.accounts SELECT * EXCLUDE (needs_user) FROM v_accounts", staged{"v_accounts", accounts})
		if balances.NumRows() > 0 {
			step("INSERT INTO {S}.balances SELECT * FROM v_balances", staged{"v_balances", balances})
		}
		if properties.NumRows() > 0 {
			step("INSERT INTO {S}.properties SELECT * FROM v_properties", staged{"v_properties", properties})
		}
	}
	if l.opts.Enrichments != nil && l.opts.Enrichments.Made() >= stageEnrichmentsEvery {
		rec := enrichmentsRecord(l.takeEnrichments())
		defer rec.Release()
		step("INSERT INTO {S}.enrichments SELECT * FROM v_enrichments", staged{"v_enrichments", rec})
	}
	if len(b.Transactions) > 0 {
		step("INSERT INTO {S}.transactions SELECT * EXCLUDE (needs_account) FROM v_transactions", staged{"v_transactions", txns})
		if suspects := l.suspectsOf(b.Transactions); len(suspects) > 0 {
			l.suspects = true
			rec := keysRecord(suspects)
			defer rec.Release()
			step("INSERT INTO {S}.suspects SELECT * FROM v_suspects", staged{"v_suspects", rec})
		}
	}
	// One commit per batch: DuckDB syncs its log at each, and holds a
	// transaction's appends in memory until it ends. The views are
	// registered first: registering one inside the transaction would count
	// as writing to the warehouse, and a transaction writes one database.
	var all []staged
	for _, s := range steps {
		all = append(all, s.views...)
	}
	release, err := l.views(all)
	if err != nil {
		return out, err
	}
	defer release()
	if err := l.exec(ctx, "BEGIN TRANSACTION"); err != nil {
		return out, err
	}
	for _, s := range steps {
		if err := l.exec(ctx, readAll(s.stmt, s.views)); err != nil {
			_, _ = l.conn.ExecContext(context.Background(), "ROLLBACK")
			return out, err
		}
	}
	if err := l.exec(ctx, "COMMIT"); err != nil {
		return out, err
	}
	return out, l.store.opts.Faults.Hit(failpoint.LoadStaged)
}

// checkParents rejects accounts whose user and transactions whose account the
// warehouse does not know (accounts and transactions files), and skips
// transactions of investment accounts; it drops them from b and reports
// which kinds it dropped rows of (their records are then stale).
// Only upserts are checked: deleting what does not exist is a no-op.
func (l *Load) checkParents(ctx context.Context, b *stages.Batch, accounts, txns arrow.RecordBatch, out *Applied) (accountsDropped, txnsDropped bool, err error) {
	needsUser, needsAccount := false, false
	for _, a := range b.Accounts {
		needsUser = needsUser || a.NeedsUser
	}
	for _, t := range b.Transactions {
		needsAccount = needsAccount || t.NeedsAccount
	}
	drop := map[stages.Seq]bool{}
	reject := func(rej stages.Rejection, seq stages.Seq, count *int64) {
		drop[seq] = true
		*count++
		if len(out.Rejections) < l.opts.MaxRejections {
			out.Rejections = append(out.Rejections, rej)
		}
	}
	if needsUser {
		err := l.queryWith(ctx, `
SELECT a.seq, a.line, a.account_id, a.partner_customer_id FROM v_accounts a
WHERE a.needs_user AND a.action = 'upsert' AND NOT EXISTS (
  SELECT 1 FROM users u WHERE u.partner_id = {P} AND u.partner_customer_id = a.partner_customer_id)
ORDER BY a.seq`, func(rows *sql.Rows) error {
			var seq stages.Seq
			var rej = stages.Rejection{Context: "account", Field: "PartnerCustomerId"}
			var user string
			if err := rows.Scan(&seq, &rej.Line, &rej.Identifier, &user); err != nil {
				return err
			}
			rej.Message = "unknown user " + user + ": no such user for partner " + l.opts.Partner
			reject(rej, seq, &out.Rejected.Accounts.Error)
			return nil
		}, staged{"v_accounts", accounts})
		if err != nil {
			return false, false, err
		}
		before := len(b.Accounts)
		b.Accounts = keep(b.Accounts, func(a *stages.Account) bool { return !drop[a.Seq] })
		accountsDropped = len(b.Accounts) < before
	}
	if needsAccount {
		err := l.queryWith(ctx, `
SELECT t.seq, t.line, t.transaction_id, t.account_id, a.account_type
FROM v_transactions t LEFT JOIN (SELECT account_id, account_type FROM accounts WHERE partner_id = {P}) a
  ON a.account_id = t.account_id
WHERE t.needs_account AND t.action = 'upsert' AND (a.account_id IS NULL OR a.account_type = 'investment')
ORDER BY t.seq`, func(rows *sql.Rows) error {
			var seq stages.Seq
			var rej = stages.Rejection{Context: "transaction", Field: "AccountId"}
			var account string
			var typ sql.NullString
			if err := rows.Scan(&seq, &rej.Line, &rej.Identifier, &account, &typ); err != nil {
				return err
			}
			if typ.Valid { // an investment account: not created, as the spec says
				drop[seq] = true
				out.Skipped++
				return nil
			}
			rej.Message = "unknown account " + account + ": no such account for partner " + l.opts.Partner
			reject(rej, seq, &out.Rejected.Transactions.Error)
			return nil
		}, staged{"v_transactions", txns})
		if err != nil {
			return false, false, err
		}
		before := len(b.Transactions)
		b.Transactions = keep(b.Transactions, func(t *stages.Transaction) bool { return !drop[t.Seq] })
		txnsDropped = len(b.Transactions) < before
	}
	return accountsDropped, txnsDropped, nil
}

// keep filters rows in place.
func keep[R any](rows []R, ok func(*R) bool) []R {
	out := rows[:0]
	for i := range rows {
		if ok(&rows[i]) {
			out = append(out, rows[i])
		}
	}
	return out
}

// suspectsOf returns the transaction keys of rows that this file may have
// staged before (in an earlier batch or earlier in this one), and records
// the keys as seen.
func (l *Load) suspectsOf(rows []stages.Transaction) [][2]string {
	var out [][2]string
	var key []byte
	for i := range rows {
		t := &rows[i]
		key = append(append(append(key[:0], t.AccountID...), 0), t.TransactionID...)
		if l.seen.TestAndAdd(key) {
			out = append(out, [2]string{t.AccountID, t.TransactionID})
		}
	}
	return out
}

// Resolving the file's actions, set-based over the staged events. The
// result equals applying the file's records one by one in file order:
//
//   - For each user, account and transaction key, the event with the highest
//     seq wins: an upsert replaces the stored record, a delete removes it.
//   - A user delete kills, at its seq, the accounts the user owned just
//     before it: the owner named by the account's last upsert before the
//     delete, or else the stored owner.
//   - An account killed (deleted, or by its user's delete) loses its stored
//     balances, properties and transactions, and the file's transactions of
//     that account that came before the kill.
//
// Only suspects can occur twice; they are few, so this is one scan.
const dedupeSuspects = `DELETE FROM {S}.transactions s USING (
  SELECT l.account_id, l.transaction_id, max(l.seq) AS last
  FROM {S}.transactions l SEMI JOIN {S}.suspects x USING (account_id, transaction_id)
  GROUP BY ALL) d
WHERE s.account_id = d.account_id AND s.transaction_id = d.transaction_id AND s.seq < d.last`

var resolveUsersAndAccounts = []string{
	`CREATE OR REPLACE TABLE {S}.last_users AS
SELECT * FROM {S}.users QUALIFY row_number() OVER (PARTITION BY partner_customer_id ORDER BY seq DESC) = 1`,
	`CREATE OR REPLACE TABLE {S}.account_kills AS
WITH user_deletes AS (
  SELECT partner_customer_id, seq FROM {S}.users WHERE action = 'delete'),
upserts AS (
  SELECT account_id, partner_customer_id, seq FROM {S}.accounts WHERE action = 'upsert'),
stored AS (
  SELECT account_id, partner_customer_id FROM accounts WHERE partner_id = {P}),
candidates AS (
  SELECT s.account_id, d.partner_customer_id, d.seq FROM user_deletes d JOIN stored s USING (partner_customer_id)
  UNION
  SELECT u.account_id, d.partner_customer_id, d.seq FROM user_deletes d JOIN upserts u USING (partner_customer_id)
  WHERE u.seq < d.seq)
SELECT c.account_id, c.seq FROM candidates c
  ASOF LEFT JOIN upserts u ON u.account_id = c.account_id AND c.seq > u.seq
  LEFT JOIN stored s ON s.account_id = c.account_id
WHERE coalesce(u.partner_customer_id, s.partner_customer_id) = c.partner_customer_id
UNION ALL
SELECT account_id, seq FROM {S}.accounts WHERE action = 'delete'`,
	`CREATE OR REPLACE TABLE {S}.last_kills AS SELECT account_id, max(seq) AS seq FROM {S}.account_kills GROUP BY ALL`,
	`CREATE OR REPLACE TABLE {S}.last_accounts AS
SELECT a.* FROM {S}.accounts a LEFT JOIN {S}.last_kills k USING (account_id)
WHERE a.action = 'upsert' AND a.seq > coalesce(k.seq, -1)
QUALIFY row_number() OVER (PARTITION BY a.account_id ORDER BY a.seq DESC) = 1`,
	// A stored account keeps its key; a new one gets the next, in the order
	// accounts first appear (see account_key in the schema), as batches
	// applied one by one would number them. Commit holds the write lock, so
	// no other load takes the same keys.
	`CREATE OR REPLACE TABLE {S}.account_keys AS
SELECT a.account_id, coalesce(k.account_key, (SELECT coalesce(max(account_key), 0) FROM accounts)
  + row_number() OVER (PARTITION BY k.account_key IS NULL ORDER BY f.first)) AS account_key
FROM {S}.last_accounts a JOIN (SELECT account_id, min(seq) AS first FROM {S}.accounts GROUP BY ALL) f USING (account_id)
  LEFT JOIN (SELECT account_id, account_key FROM accounts WHERE partner_id = {P}) k USING (account_id)`,
}

// touchedOwners lists the owners whose accounts the file changes, before
// and after (an account can change owner), for the account directory;
// closedOwners those of the accounts the load closes.
const (
	touchedOwners = `SELECT partner_customer_id FROM accounts WHERE partner_id = {P} AND account_id IN (
  SELECT account_id FROM {S}.last_accounts UNION ALL SELECT account_id FROM {S}.last_kills)
UNION SELECT partner_customer_id FROM {S}.last_accounts`
	closedOwners  = `SELECT partner_customer_id FROM accounts WHERE partner_id = {P} AND account_id IN (SELECT account_id FROM {S}.closing)`
	closeAccounts = `UPDATE accounts SET state = 'closed', updated_at = {NOW}
WHERE partner_id = {P} AND state <> 'closed' AND account_id IN (SELECT account_id FROM {S}.closing)`
	// protectOld drops the load's events for stored transactions posted
	// before {PROTECT}: neither replaced, nor deleted, nor doubled.
	protectOld = `DELETE FROM {S}.transactions s USING transactions t
WHERE t.partner_id = {P} AND t.account_id = s.account_id AND t.transaction_id = s.transaction_id AND t.posted_on < {PROTECT}`
)

// stageClosing is the statement that lists the accounts to close.
func stageClosing(ids []string) string {
	values := make([]string, len(ids))
	for i, id := range ids {
		values[i] = "(" + quote(id) + ")"
	}
	return "CREATE OR REPLACE TABLE {S}.closing AS SELECT * FROM (VALUES " + strings.Join(values, ", ") + ") v(account_id)"
}

// touchedAccounts reads, in the commit's transaction, the accounts of the
// touched owners as the commit leaves them; an owner left with none comes
// once with NULL account columns.
const touchedAccounts = `SELECT {P}, o.partner_customer_id, ` + directoryColumns + `
FROM {S}.touched_owners o LEFT JOIN accounts a ON a.partner_id = {P} AND a.partner_customer_id = o.partner_customer_id`

// applyResolved changes the warehouse, in one transaction.
var applyResolved = []string{
	`DELETE FROM users WHERE partner_id = {P} AND partner_customer_id IN (SELECT partner_customer_id FROM {S}.last_users)`,
	// What only the API gives a user goes with any delete of it in the
	// file, as its accounts do, even if the file creates it again.
	`DELETE FROM user_profiles WHERE partner_id = {P} AND partner_customer_id IN (
  SELECT partner_customer_id FROM {S}.users WHERE action = 'delete')`,
	`DELETE FROM networth_accounts WHERE partner_id = {P} AND partner_customer_id IN (
  SELECT partner_customer_id FROM {S}.users WHERE action = 'delete')`,
	`INSERT INTO users (partner_id, partner_customer_id, first_name, last_name, email, zip_code,
  user_experience, source_file, source_line, updated_at)
SELECT {P}, partner_customer_id, first_name, last_name, email, zip_code, user_experience, {SRC seq}, line, {NOW}
FROM {S}.last_users WHERE action = 'upsert'`,
	`DELETE FROM accounts WHERE partner_id = {P} AND account_id IN (
  SELECT account_id FROM {S}.last_accounts UNION ALL SELECT account_id FROM {S}.last_kills)`,
	`INSERT INTO accounts (partner_id, partner_customer_id, account_id, account_number, fi_name, nickname,
  account_type, account_class, state, account_experience, source_file, source_line, updated_at, account_key, owner_hash)
SELECT {P}, partner_customer_id, account_id, account_number, fi_name, nickname,
  account_type, account_class, 'open', account_experience, {SRC seq}, line, {NOW}, k.account_key, ` + ownerHash("{P}", "partner_customer_id") + `
FROM {S}.last_accounts JOIN {S}.account_keys k USING (account_id)`,
	// A snapshot is keyed by (account, as_of): the same key again replaces it;
	// a killed account loses its history.
	`DELETE FROM balances WHERE partner_id = {P} AND (
  account_id IN (SELECT account_id FROM {S}.last_kills) OR
  (as_of = {D} AND account_id IN (SELECT account_id FROM {S}.last_accounts)))`,
	`INSERT INTO balances (partner_id, account_id, balance_type, amount, currency_code, as_of, updated_at, account_key)
SELECT {P}, b.account_id, b.balance_type, b.amount, b.currency_code, {D}, {NOW}, k.account_key
FROM {S}.balances b JOIN {S}.last_accounts a ON a.seq = b.account_seq JOIN {S}.account_keys k ON k.account_id = a.account_id`,
	`DELETE FROM account_properties WHERE partner_id = {P} AND account_id IN (
  SELECT account_id FROM {S}.last_accounts UNION ALL SELECT account_id FROM {S}.last_kills)`,
	// The user's name for an account goes with the account, even if the
	// file opens it again.
	`DELETE FROM account_edits WHERE partner_id = {P} AND account_id IN (SELECT account_id FROM {S}.account_kills)`,
	`INSERT INTO account_properties (partner_id, account_id, property_type, property_value, updated_at)
SELECT {P}, p.account_id, p.property_type, p.property_value, {NOW}
FROM {S}.properties p SEMI JOIN {S}.last_accounts a ON a.seq = p.account_seq`,
}

const (
	deleteKilledTransactions = `
DELETE FROM transactions WHERE partner_id = {P} AND account_id IN (SELECT account_id FROM {S}.last_kills)`
	replaceStoredTransactions = `
DELETE FROM transactions t USING {S}.transactions s
WHERE t.partner_id = {P} AND t.account_id = s.account_id AND t.transaction_id = s.transaction_id`
	// {USERS} and {DECISION} are filled by plan: with user rules, the
	// rule that wins a transaction overrides the enrichment staged with it.
	// The account's key comes from the warehouse's accounts, which this
	// transaction has already given the file's accounts.
	insertTransactions = `
INSERT INTO transactions (partner_id, account_id, transaction_id, transaction_type, posted_at, posted_on,
  originated_at, originated_on, amount, memo, original_name, check_number, source_file, source_line, updated_at,
  enrichment_id, account_key, hidden)
SELECT {P}, t.account_id, t.transaction_id, t.transaction_type, t.posted_at, t.posted_on,
  t.originated_at, t.originated_on, t.amount, t.memo, t.original_name, t.check_number, {SRC t.seq}, t.line, {NOW},
  d.enrichment_id, a.account_key, nullif(t.hidden, false)
FROM {S}.transactions t{USERS} LEFT JOIN {S}.decisions d ON d.local_id = {DECISION}
  LEFT JOIN (SELECT account_id, account_key FROM accounts WHERE partner_id = {P}) a ON a.account_id = t.account_id`
	joinUserTagged = ` LEFT JOIN {S}.user_tagged u ON u.seq = t.seq`
	// A push batch's nickname is the user's own name for a transaction: it
	// goes where the API's edits go (PUT transactions/:id), so it overlays
	// the enrichment and outlives re-sends that leave it out. The rows are
	// picked in staging, as the transactions' insert picks its rows (the
	// same survivors), so the warehouse's statements join only the few
	// nicknamed rows: joining the staged transactions to the warehouse's
	// took 14 s of a 100 MB batch.
	stageNicknames = `CREATE OR REPLACE TABLE {S}.nicknames AS
SELECT t.account_id, t.transaction_id, t.user_nickname FROM {S}.transactions t`
	nicknamed           = ` AND t.user_nickname IS NOT NULL`
	updateNicknameEdits = `UPDATE transaction_edits x SET nickname = n.user_nickname, edited_at = {NOW}
FROM {S}.nicknames n
WHERE x.partner_id = {P} AND x.account_id = n.account_id AND x.transaction_id = n.transaction_id`
	insertNicknameEdits = `INSERT INTO transaction_edits (partner_id, account_id, transaction_id, nickname, tags, edited_at)
SELECT {P}, n.account_id, n.transaction_id, n.user_nickname, NULL, {NOW} FROM {S}.nicknames n
WHERE NOT EXISTS (SELECT 1 FROM transaction_edits x
  WHERE x.partner_id = {P} AND x.account_id = n.account_id AND x.transaction_id = n.transaction_id)`
	// Without kills, the insert need not join: most files.
	survivingKills = ` LEFT JOIN {S}.last_kills k ON k.account_id = t.account_id
WHERE t.action = 'upsert' AND t.seq > coalesce(k.seq, -1)`
	upsertsOnly = ` WHERE t.action = 'upsert'`
	// A user's rows are read by their account keys, and zone maps skip
	// the row groups whose key range misses them. A file that updates old
	// accounts and opens new ones would otherwise append row groups that
	// each span almost every key, read by every request.
	inKeyOrder = ` ORDER BY a.account_key`
)

// The file's enrichment decisions get the warehouse's ids: those it has
// already, else new ones numbered after them, in a fixed order. The
// decisions are listed by their id in the load: the results staged with
// transactions (positive) and, with user rules, the rules that won some
// (negative). Commit holds the store's write lock from here to its end, so
// no other writer takes the same ids.
const (
	stagedDecisions = `(SELECT id AS local_id, nickname, tag, tag_reason, merchant_key FROM {S}.enrichments)`
	userDecisions   = `(SELECT id AS local_id, nickname, tag, tag_reason, merchant_key FROM {S}.enrichments
  UNION ALL SELECT DISTINCT local_id, nickname, tag, reason, merchant_key FROM {S}.user_tagged)`
	insertEnrichments = `INSERT INTO enrichments SELECT * FROM {S}.new_enrichments`
)

// newEnrichments numbers the decisions the query lists that enrichments
// does not hold yet, after its highest id, in a fixed order: rows to insert.
func newEnrichments(decisions string) string {
	return `SELECT (SELECT coalesce(max(enrichment_id), 0) FROM enrichments)
    + row_number() OVER (ORDER BY nickname, tag, tag_reason, merchant_key) AS enrichment_id, *
FROM (SELECT nickname, tag, tag_reason, merchant_key FROM ` + decisions + `
  EXCEPT SELECT nickname, tag, tag_reason, merchant_key FROM enrichments)`
}

// mapDecisions gives each of the load's decisions its warehouse id.
func mapDecisions(decisions string) string {
	return `CREATE OR REPLACE TABLE {S}.decisions AS
SELECT l.local_id, min(g.enrichment_id) AS enrichment_id
FROM ` + decisions + ` l JOIN (SELECT * FROM enrichments UNION ALL BY NAME SELECT * FROM {S}.new_enrichments) g
  ON ` + sameEnrichment("g", "l") + `
GROUP BY l.local_id`
}

// sameEnrichment matches the decision columns of a and b, NULLs alike.
func sameEnrichment(a, b string) string {
	var conds []string
	for _, c := range []string{"nickname", "tag", "tag_reason", "merchant_key"} {
		conds = append(conds, a+"."+c+" IS NOT DISTINCT FROM "+b+"."+c)
	}
	return strings.Join(conds, " AND ")
}

// plan lists Commit's statements: resolution in the staging database, then
// the warehouse's transaction.
func (l *Load) plan() (resolve, apply []string) {
	if !l.opts.ProtectBefore.IsZero() {
		resolve = append(resolve, strings.ReplaceAll(protectOld, "{PROTECT}", "DATE "+quote(l.opts.ProtectBefore.Format(time.DateOnly))))
	}
	if l.suspects {
		resolve = append(resolve, dedupeSuspects)
	}
	closes := len(l.opts.CloseAccounts) > 0
	if closes {
		resolve = append(resolve, stageClosing(l.opts.CloseAccounts))
	}
	var owners []string
	if l.users || l.accounts {
		resolve = append(resolve, resolveUsersAndAccounts...)
		owners = append(owners, touchedOwners)
		apply = append(apply, applyResolved...)
	}
	if closes {
		owners = append(owners, closedOwners)
		apply = append(apply, closeAccounts)
	}
	if l.touchesDirectory() {
		resolve = append(resolve, "CREATE OR REPLACE TABLE {S}.touched_owners AS "+strings.Join(owners, "\nUNION\n"))
	}
	local, users, decision := stagedDecisions, "", "t.enrichment_id"
	if l.userRules {
		resolve = append(resolve, l.rankUserRulesStmt())
		local, users, decision = userDecisions, joinUserTagged, "coalesce(u.local_id, t.enrichment_id)"
	}
	resolve = append(resolve, "CREATE OR REPLACE TABLE {S}.new_enrichments AS "+newEnrichments(local), mapDecisions(local))
	if l.deletes {
		apply = append(apply, deleteKilledTransactions)
	}
	if l.hadTransactions {
		apply = append(apply, replaceStoredTransactions)
	}
	apply = append(apply, insertEnrichments)
	insert := strings.NewReplacer("{USERS}", users, "{DECISION}", decision).Replace(insertTransactions)
	survivors := upsertsOnly
	if l.users || l.accounts {
		survivors = survivingKills
	}
	apply = append(apply, insert+survivors+inKeyOrder)
	if l.userNicknames {
		resolve = append(resolve, stageNicknames+survivors+nicknamed)
		apply = append(apply, updateNicknameEdits, insertNicknameEdits)
	}
	return resolve, apply
}

// IngestRecord is the audit row written with the file's data.
type IngestRecord struct {
	// File names the file or batch; empty, the load's Source.
	File     string
	FileType string
	Status   string
	Bytes    int64
	Report   any // marshalled to JSON
	// JobID links the row to the upload job that applied the file, so a
	// job interrupted after its commit is known to be done.
	JobID string
}

// Commit resolves the staged file and applies it to the warehouse at once,
// with its audit row: one per batch for a load of several (see Part).
func (l *Load) Commit(ctx context.Context, recs ...IngestRecord) error {
	if l.done {
		return fmt.Errorf("warehouse: load already finished")
	}
	l.done = true
	defer l.discard()
	reports := make([]string, len(recs))
	for i, rec := range recs {
		report, err := json.Marshal(rec.Report)
		if err != nil {
			return err
		}
		reports[i] = string(report)
	}
	if results := l.takeEnrichments(); len(results) > 0 {
		rec := enrichmentsRecord(results)
		defer rec.Release()
		if err := l.execWith(ctx, "INSERT INTO {S}.enrichments SELECT * FROM v_enrichments", staged{"v_enrichments", rec}); err != nil {
			return err
		}
	}
	l.store.writeMu.Lock()
	defer l.store.writeMu.Unlock()
	l.store.committing.Add(1)
	defer l.store.committing.Add(-1)
	if err := l.findUserRules(ctx); err != nil {
		return err
	}
	if l.userNicknames {
		// Before the commit, so that no read sees its edits unflagged; a
		// flag for an account left without edits only costs a lookup.
		if err := l.flagEditedAccounts(ctx); err != nil {
			return err
		}
	}
	resolve, apply := l.plan()
	if commit, usual := l.store.opts.CommitMemoryLimit, l.store.opts.MemoryLimit; commit != usual {
		// A global setting: the API's reads share the room while it lasts.
		// Commits hold writeMu, so no other commit sets it meanwhile.
		if err := l.exec(ctx, "SET memory_limit = '"+commit+"'"); err != nil {
			return fmt.Errorf("warehouse: commit: %w", err)
		}
		defer func() {
			if err := l.exec(context.Background(), "SET memory_limit = '"+usual+"'"); err != nil {
				l.store.log.Error("restoring the memory limit after a commit", "err", err)
			}
		}()
	}
	err := l.resolveAndApply(ctx, resolve, apply, recs, reports, false)
	if isOutOfMemory(err) && ctx.Err() == nil {
		// The file's statements share DuckDB's memory limit with the API's
		// reads; a commit that lost that race is not the file's fault. It
		// runs once more with no reads at all: they wait, the file lands.
		l.store.commitRetries.Add(1)
		err = l.store.exclusively(func() error { return l.resolveAndApply(ctx, resolve, apply, recs, reports, true) })
	}
	if err != nil {
		return fmt.Errorf("warehouse: commit: %w", err)
	}
	return nil
}

// flagEditedAccounts tells the store which accounts the file's nicknames
// edit (see Store.edits).
func (l *Load) flagEditedAccounts(ctx context.Context) error {
	rows, err := l.conn.QueryContext(ctx, l.expand(`SELECT DISTINCT account_id FROM {S}.transactions WHERE user_nickname IS NOT NULL`))
	if err != nil {
		return fmt.Errorf("warehouse: %w", l.store.storageError(err))
	}
	defer rows.Close()
	for rows.Next() {
		var account string
		if err := rows.Scan(&account); err != nil {
			return err
		}
		l.store.edited.add(l.opts.Partner, account)
	}
	return rows.Err()
}

// resolveAndApply runs the resolution in the staging database (its tables
// are replaced when run again), then the warehouse's transaction with the
// audit row, rolled back on any error. alone: API reads are held off
// already.
func (l *Load) resolveAndApply(ctx context.Context, resolve, apply []string, recs []IngestRecord, reports []string, alone bool) error {
	for _, stmt := range resolve {
		if err := l.exec(ctx, stmt); err != nil {
			return err
		}
	}
	if err := l.exec(ctx, "BEGIN TRANSACTION"); err != nil {
		return err
	}
	var err error
	for _, stmt := range apply {
		if err = l.exec(ctx, stmt); err != nil {
			break
		}
	}
	if err == nil && len(l.opts.Profiles) > 0 {
		err = l.storeProfiles(ctx)
	}
	if err == nil && len(recs) > 0 {
		err = l.insertIngests(ctx, recs, reports)
	}
	var touched map[string][]directoryAccount
	if err == nil && l.touchesDirectory() {
		touched, err = l.touchedAccounts(ctx)
	}
	if err == nil {
		err = l.store.opts.Faults.Hit(failpoint.LoadBeforeCommit)
	}
	if err == nil {
		err = l.commit(ctx, alone, touched)
	}
	if err != nil {
		// A fresh context: the caller's may be cancelled, and the rollback must still run.
		_, _ = l.conn.ExecContext(context.Background(), "ROLLBACK")
		return err
	}
	// The file is applied: an injected error here would only lie about it.
	_ = l.store.opts.Faults.Hit(failpoint.LoadCommitted)
	l.store.checkpoint(context.WithoutCancel(ctx), l.conn)
	return nil
}

// insertIngests writes the audit rows, one per file or batch, in one
// statement.
func (l *Load) insertIngests(ctx context.Context, recs []IngestRecord, reports []string) error {
	finished := time.Now().UTC()
	var values []string
	var args []any
	for i, rec := range recs {
		var jobID any
		if rec.JobID != "" {
			jobID = rec.JobID
		}
		file := rec.File
		if file == "" {
			file = l.opts.Source
		}
		values = append(values, "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
		args = append(args, l.opts.Partner, file, rec.FileType, l.opts.AsOf.Format(time.DateOnly), l.started, finished,
			rec.Status, rec.Bytes, reports[i], jobID)
	}
	_, err := l.conn.ExecContext(ctx, `INSERT INTO ingests
		(partner_id, file, file_type, as_of, started_at, finished_at, status, bytes, report, job_id)
		VALUES `+strings.Join(values, ", "), args...)
	return err
}

// commit makes the file durable and visible. DuckDB's COMMIT writes the
// WAL, makes the rows visible, then flushes and syncs the WAL; if that
// fails (a full disk) it takes them back (DuckTransaction::Commit,
// FlushCommit, RevertCommit in duckdb v1.4.5). A read that began its
// transaction in that moment would have seen rows that then vanished, so
// no read begins during COMMIT: API reads hold Store.Reading, and the
// commit waits for those under way (they cannot see the file: their
// transactions began before it) and holds new ones for its length. To keep
// that short, the database file is synced first: the rows the load wrote
// there as it went (DuckDB's optimistic writes), which COMMIT would sync
// itself, are on disk already.
func (l *Load) commit(ctx context.Context, alone bool, touched map[string][]directoryAccount) error {
	if err := durable.SyncFile(l.store.path); err != nil {
		return fmt.Errorf("warehouse: sync %s: %w", filepath.Base(l.store.path), l.store.storageError(err))
	}
	if !alone {
		l.store.readGate.Lock()
		defer l.store.readGate.Unlock()
	}
	if err := l.exec(ctx, "COMMIT"); err != nil {
		return err
	}
	if touched != nil {
		l.store.directory.replace(touched)
	}
	return nil
}

// touchesDirectory: the store keeps the account directory and the file
// may change accounts.
func (l *Load) touchesDirectory() bool {
	return l.store.directory != nil && (l.users || l.accounts || len(l.opts.CloseAccounts) > 0)
}

// touchedAccounts reads what the account directory must change.
func (l *Load) touchedAccounts(ctx context.Context) (map[string][]directoryAccount, error) {
	rows, err := l.conn.QueryContext(ctx, l.expand(touchedAccounts))
	if err != nil {
		return nil, fmt.Errorf("warehouse: account directory: %w", err)
	}
	touched := map[string][]directoryAccount{}
	if err := l.store.directory.scan(rows, touched); err != nil {
		return nil, err
	}
	return touched, nil
}

// isOutOfMemory reports whether DuckDB failed for its memory limit.
func isOutOfMemory(err error) bool {
	var e *duckdb.Error
	return errors.As(err, &e) && e.Type == duckdb.ErrorTypeOutOfMemory
}

// Rollback abandons the file: the warehouse stays as it was.
func (l *Load) Rollback() {
	if l.done {
		return
	}
	l.done = true
	l.discard()
}

// discard drops the staging database and frees the connection. It is
// also where a failed load learns that DuckDB invalidated the database
// (a rollback it could not complete): the store then reopens it before
// the next load.
func (l *Load) discard() {
	_, err := l.conn.ExecContext(context.Background(), l.expand("DETACH DATABASE IF EXISTS {S}"))
	l.store.loadEnds(l.conn)
	l.conn.Close()
	_ = l.store.Check(err)
}
