package warehouse

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/bits-and-blooms/bloom/v3"
	"github.com/duckdb/duckdb-go/v2"

	"github.com/flatfiler/flatfiler/stages"
)

// LoadOptions describe the file being applied.
type LoadOptions struct {
	Partner string
	AsOf    time.Time // business date of the balance snapshots
	Source  string    // file name, kept on every row for audits
	// MaxRejections caps how many rejections Apply returns; all are counted.
	MaxRejections int
}

// Load applies one file: every batch goes into one DuckDB transaction, so the
// file is applied whole by Commit or not at all.
type Load struct {
	conn    *sql.Conn
	arrow   *duckdb.Arrow
	opts    LoadOptions
	started time.Time
	lit     map[string]string
	done    bool
	// seen holds the transaction keys staged so far. A key it may have seen
	// is a suspect: the file may hold it twice across batches, which the
	// final merge resolves for suspects only.
	seen           *bloom.BloomFilter
	suspectsStaged bool
	// hadTransactions: the partner had stored transactions before this file;
	// if not, the final merge need not look for rows to replace.
	hadTransactions bool
	trace           bool // FLATFILER_TRACE_SQL: print each statement's duration
}

// Applied is what the warehouse decided about a batch beyond validation.
type Applied struct {
	Rejections []stages.Rejection // the first MaxRejections, in file order
	Rejected   stages.Totals      // Error counts per kind of rows rejected here
	Skipped    int64              // transactions of investment accounts
}

// Begin starts loading a file.
func (s *Store) Begin(ctx context.Context, opts LoadOptions) (*Load, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin load: %w", err)
	}
	l := &Load{conn: conn, opts: opts, started: time.Now().UTC(), trace: os.Getenv("FLATFILER_TRACE_SQL") != ""}
	err = conn.Raw(func(dc any) error {
		a, err := duckdb.NewArrowFromConn(dc.(driver.Conn))
		l.arrow = a
		return err
	})
	if err == nil {
		_, err = conn.ExecContext(ctx, "BEGIN TRANSACTION")
	}
	if err == nil {
		// Created and dropped inside the file's transaction: nobody else sees them.
		_, err = conn.ExecContext(ctx, createLoadTables)
	}
	if err == nil {
		err = conn.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM transactions WHERE partner_id = ?)", opts.Partner).Scan(&l.hadTransactions)
	}
	// 8M keys at 0.1% false positives: 14 MB whatever the file's size; a
	// larger file only makes more suspects.
	l.seen = bloom.NewWithEstimates(8_000_000, 0.001)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("begin load: %w", err)
	}
	l.lit = map[string]string{
		"{P}":   quote(opts.Partner),
		"{D}":   "DATE " + quote(opts.AsOf.Format(time.DateOnly)),
		"{NOW}": "TIMESTAMPTZ " + quote(l.started.Format("2006-01-02 15:04:05.999999Z07:00")),
		"{SRC}": quote(opts.Source),
	}
	return l, nil
}

func (l *Load) exec(ctx context.Context, stmt string) error {
	for k, v := range l.lit {
		stmt = strings.ReplaceAll(stmt, k, v)
	}
	t0 := time.Now()
	_, err := l.conn.ExecContext(ctx, stmt)
	first, _, _ := strings.Cut(strings.TrimSpace(stmt), "\n")
	if l.trace {
		fmt.Fprintf(os.Stderr, "%8.1fms %.90s\n", float64(time.Since(t0).Microseconds())/1000, first)
	}
	if err != nil {
		return fmt.Errorf("warehouse: %s: %w", first, err)
	}
	return nil
}

// Staging. Each statement reads the batch through its own one-shot Arrow
// view of the same record batch. No staging table: DuckDB keeps every table
// created or filled inside a transaction until it ends, so staging tables
// would make memory grow with the file (measured: 266 MB against 38 MB for
// 3M rows).
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
				return fmt.Sprintf("(WITH m_%[1]s AS MATERIALIZED (SELECT * FROM arrow_%[1]s) SELECT * FROM m_%[1]s)", name)
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
	query = readAll(query, views)
	for k, v := range l.lit {
		query = strings.ReplaceAll(query, k, v)
	}
	rows, err := l.conn.QueryContext(ctx, query)
	if err != nil {
		return fmt.Errorf("warehouse: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func (l *Load) views(views []staged) (func(), error) {
	var releases []func()
	releaseAll := func() {
		for _, r := range releases {
			r()
		}
	}
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

// Apply merges a resolved batch into the warehouse inside the file's
// transaction. Cascades of deletes are decided against the stored state by
// sequence number, so that the result equals applying the file's rows one by
// one in file order.
func (l *Load) Apply(ctx context.Context, r *stages.Resolved) (Applied, error) {
	var out Applied
	b := r.Batch
	var recs []arrow.RecordBatch
	record := func(rec arrow.RecordBatch) arrow.RecordBatch { recs = append(recs, rec); return rec }
	defer func() {
		for _, rec := range recs {
			rec.Release()
		}
	}()
	// Transactions are most of the rows: their record is built once, and
	// again only if the checks against stored state drop some.
	txns := record(transactionsRecord(b.Transactions, r.Transactions, r.OwnerKnown))
	dropped, err := l.checkParents(ctx, r, txns, &out)
	if err != nil {
		return out, err
	}
	if len(r.UserDeletes) > 0 {
		orphans, err := l.dropOrphanedByStoredOwner(ctx, r, txns)
		if err != nil {
			return out, err
		}
		dropped = dropped || orphans
	}
	if dropped {
		txns = record(transactionsRecord(b.Transactions, r.Transactions, r.OwnerKnown))
	}

	if r.HasDeletes() {
		gone, err := l.goneAccounts(ctx, r)
		if err != nil {
			return out, err
		}
		goneView := staged{"v_gone", record(deletesRecord(gone))}
		userDeletes := staged{"v_user_deletes", record(deletesRecord(r.UserDeletes))}
		for _, table := range []string{"transactions", "balances", "account_properties", "accounts"} {
			stmt := "DELETE FROM " + table + " WHERE partner_id = {P} AND account_id IN (SELECT key FROM v_gone)"
			if err := l.execWith(ctx, stmt, goneView); err != nil {
				return out, err
			}
		}
		// Transactions of this file staged before the delete go with it.
		stmt := "DELETE FROM load_transactions s USING v_gone g WHERE s.account_id = g.key AND s.seq < g.seq"
		if err := l.execWith(ctx, stmt, goneView); err != nil {
			return out, err
		}
		if err := l.execWith(ctx, deleteUsers, userDeletes); err != nil {
			return out, err
		}
	}
	if suspects := l.suspects(r); len(suspects) > 0 {
		l.suspectsStaged = true
		v := staged{"v_suspects", record(transactionDeletesRecord(suspects))}
		if err := l.execWith(ctx, "INSERT INTO load_suspects SELECT account_id, transaction_id FROM v_suspects", v); err != nil {
			return out, err
		}
	}
	if len(r.TransactionDeletes) > 0 {
		v := staged{"v_transaction_deletes", record(transactionDeletesRecord(r.TransactionDeletes))}
		if err := l.execWith(ctx, stageTransactionDeletes, v); err != nil {
			return out, err
		}
	}
	if len(r.Users) > 0 {
		for _, stmt := range mergeUsers {
			v := staged{"v_users", record(usersRecord(b.Users, r.Users))}
			if err := l.execWith(ctx, stmt, v); err != nil {
				return out, err
			}
		}
	}
	if len(r.Accounts) > 0 {
		accounts := staged{"v_accounts", record(accountsRecord(b.Accounts, r.Accounts))}
		balances := staged{"v_balances", record(balancesRecord(b.Accounts, r.Accounts))}
		properties := staged{"v_properties", record(propertiesRecord(b.Accounts, r.Accounts))}
		for _, stmt := range mergeAccounts {
			if err := l.execWith(ctx, stmt, accounts, balances, properties); err != nil {
				return out, err
			}
		}
	}
	if len(r.Transactions) > 0 {
		v := staged{"v_transactions", txns}
		if err := l.execWith(ctx, stageTransactions, v); err != nil {
			return out, err
		}
	}
	return out, nil
}

// checkParents rejects accounts whose user and transactions whose account the
// warehouse does not know (accounts and transactions files), and skips
// transactions of investment accounts; it drops them from r and reports
// whether it dropped transactions (txns, their staged record, is then stale).
func (l *Load) checkParents(ctx context.Context, r *stages.Resolved, txns arrow.RecordBatch, out *Applied) (bool, error) {
	b := r.Batch
	needsUser, needsAccount := false, false
	for _, i := range r.Accounts {
		needsUser = needsUser || b.Accounts[i].NeedsUser
	}
	for _, i := range r.Transactions {
		needsAccount = needsAccount || b.Transactions[i].NeedsAccount
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
		rec := accountsRecord(b.Accounts, r.Accounts)
		defer rec.Release()
		err := l.queryWith(ctx, `
SELECT a.seq, a.line, a.account_id, a.partner_customer_id FROM v_accounts a
WHERE a.needs_user AND NOT EXISTS (
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
		}, staged{"v_accounts", rec})
		if err != nil {
			return false, err
		}
		r.Accounts = keep(r.Accounts, nil, func(i int) bool { return !drop[b.Accounts[i].Seq] })
	}
	if needsAccount {
		err := l.queryWith(ctx, `
SELECT t.seq, t.line, t.transaction_id, t.account_id, a.account_type
FROM v_transactions t LEFT JOIN (SELECT account_id, account_type FROM accounts WHERE partner_id = {P}) a
  ON a.account_id = t.account_id
WHERE t.needs_account AND (a.account_id IS NULL OR a.account_type = 'investment')
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
			return false, err
		}
	}
	return keepTransactions(r, drop), nil
}

// keepTransactions drops the transactions whose seq is in drop from r and
// reports whether there were any.
func keepTransactions(r *stages.Resolved, drop map[stages.Seq]bool) bool {
	if len(drop) == 0 {
		return false
	}
	before := len(r.Transactions)
	r.Transactions = keep(r.Transactions, &r.OwnerKnown, func(i int) bool { return !drop[r.Batch.Transactions[i].Seq] })
	return len(r.Transactions) < before
}

// suspects returns the keys of the batch that an earlier batch of the file
// may have staged too, and records the batch's keys as seen.
func (l *Load) suspects(r *stages.Resolved) []stages.TransactionDelete {
	var out []stages.TransactionDelete
	var key []byte
	check := func(account, id string) {
		key = append(append(append(key[:0], account...), 0), id...)
		if l.seen.TestAndAdd(key) {
			out = append(out, stages.TransactionDelete{TransactionKey: stages.TransactionKey{AccountID: account, TransactionID: id}})
		}
	}
	for _, d := range r.TransactionDeletes {
		check(d.AccountID, d.TransactionID)
	}
	for _, i := range r.Transactions {
		t := &r.Batch.Transactions[i]
		check(t.AccountID, t.TransactionID)
	}
	return out
}

// keep filters the indexes in pick (and the flags parallel to them).
func keep(pick []int, parallel *[]bool, ok func(int) bool) []int {
	out := pick[:0]
	var flags []bool
	for n, i := range pick {
		if ok(i) {
			out = append(out, i)
			if parallel != nil {
				flags = append(flags, (*parallel)[n])
			}
		}
	}
	if parallel != nil {
		*parallel = flags
	}
	return out
}

// dropOrphanedByStoredOwner: a user deleted in the batch takes with it the
// transactions that came before the delete on the accounts it owns; when the
// batch does not name such an account, its owner is the stored one.
func (l *Load) dropOrphanedByStoredOwner(ctx context.Context, r *stages.Resolved, txns arrow.RecordBatch) (bool, error) {
	deletes := deletesRecord(r.UserDeletes)
	defer deletes.Release()
	drop := map[stages.Seq]bool{}
	err := l.queryWith(ctx, `
SELECT t.seq FROM v_transactions t
JOIN accounts a ON a.partner_id = {P} AND a.account_id = t.account_id
JOIN v_user_deletes d ON d.key = a.partner_customer_id
WHERE NOT t.owner_known AND t.seq < d.seq`, func(rows *sql.Rows) error {
		var seq stages.Seq
		err := rows.Scan(&seq)
		drop[seq] = true
		return err
	}, staged{"v_transactions", txns}, staged{"v_user_deletes", deletes})
	if err != nil {
		return false, err
	}
	return keepTransactions(r, drop), nil
}

// goneAccounts lists the accounts whose stored rows a batch deletes: those
// deleted, and those stored under a deleted user.
func (l *Load) goneAccounts(ctx context.Context, r *stages.Resolved) ([]stages.KeyDelete, error) {
	gone := append([]stages.KeyDelete(nil), r.AccountDeletes...)
	if len(r.UserDeletes) == 0 {
		return gone, nil
	}
	deletes := deletesRecord(r.UserDeletes)
	defer deletes.Release()
	err := l.queryWith(ctx, `
SELECT a.account_id, d.seq FROM accounts a JOIN v_user_deletes d ON d.key = a.partner_customer_id
WHERE a.partner_id = {P}`, func(rows *sql.Rows) error {
		var k stages.KeyDelete
		err := rows.Scan(&k.Key, &k.Seq)
		gone = append(gone, k)
		return err
	}, staged{"v_user_deletes", deletes})
	return gone, err
}

const deleteUsers = `
DELETE FROM users WHERE partner_id = {P} AND partner_customer_id IN (SELECT key FROM v_user_deletes)`

// Merges are a DELETE of the batch's keys then an INSERT, in the file's
// transaction. MERGE INTO would read its source twice, which a one-shot
// Arrow view cannot serve (DuckDB 1.4 crashes on it).
var mergeUsers = []string{`
DELETE FROM users t USING v_users s
WHERE t.partner_id = {P} AND t.partner_customer_id = s.partner_customer_id`, `
INSERT INTO users (partner_id, partner_customer_id, first_name, last_name, email, zip_code,
  user_experience, source_file, source_line, updated_at)
SELECT {P}, s.partner_customer_id, s.first_name, s.last_name, s.email, s.zip_code,
  s.user_experience, {SRC}, s.line, {NOW}
FROM v_users s`}

var mergeAccounts = []string{`
DELETE FROM accounts t USING v_accounts s
WHERE t.partner_id = {P} AND t.account_id = s.account_id`, `
INSERT INTO accounts (partner_id, partner_customer_id, account_id, account_number, fi_name, nickname,
  account_type, account_class, state, account_experience, source_file, source_line, updated_at)
SELECT {P}, s.partner_customer_id, s.account_id, s.account_number, s.fi_name, s.nickname,
  s.account_type, s.account_class, 'open', s.account_experience, {SRC}, s.line, {NOW}
FROM v_accounts s`,
	// A snapshot is keyed by (account, as_of): the same key again replaces it.
	`DELETE FROM balances t USING v_accounts s WHERE t.partner_id = {P} AND t.as_of = {D} AND t.account_id = s.account_id`,
	`INSERT INTO balances (partner_id, account_id, balance_type, amount, currency_code, as_of, updated_at)
	 SELECT {P}, b.account_id, b.balance_type, b.amount, b.currency_code, {D}, {NOW} FROM v_balances b`,
	`DELETE FROM account_properties t USING v_accounts s WHERE t.partner_id = {P} AND t.account_id = s.account_id`,
	`INSERT INTO account_properties (partner_id, account_id, property_type, property_value, updated_at)
	 SELECT {P}, p.account_id, p.property_type, p.property_value, {NOW} FROM v_properties p`,
}

// Transactions, most of the rows, are staged in a table private to the load
// with inserts only, and merged once per file (mergeTransactions). Deleting a
// batch's keys from the stored table batch after batch would rescan the rows
// the file already added every time: quadratic in the file's size.
const createLoadTables = `
CREATE TABLE load_transactions (
	seq BIGINT, line INTEGER, action VARCHAR, account_id VARCHAR, transaction_id VARCHAR,
	transaction_type VARCHAR, posted_at TIMESTAMPTZ, posted_on DATE, originated_at TIMESTAMPTZ, originated_on DATE,
	amount DECIMAL(18,2), memo VARCHAR, original_name VARCHAR, check_number VARCHAR);
CREATE TABLE load_suspects (account_id VARCHAR, transaction_id VARCHAR)`

const stageTransactions = `
INSERT INTO load_transactions
SELECT seq, line, 'upsert', account_id, transaction_id, transaction_type, posted_at, posted_on,
  originated_at, originated_on, amount, memo, original_name, check_number
FROM v_transactions`

const stageTransactionDeletes = `
INSERT INTO load_transactions (seq, action, account_id, transaction_id)
SELECT seq, 'delete', account_id, transaction_id FROM v_transaction_deletes`

// Applying the staged transactions: for each key, the last event in file
// order wins, and stored rows with a staged key are replaced.
const (
	// Only suspects can occur twice; they are few, so this is one scan.
	dedupeSuspects = `
DELETE FROM load_transactions s USING (
  SELECT l.account_id, l.transaction_id, max(l.seq) AS last
  FROM load_transactions l SEMI JOIN load_suspects x USING (account_id, transaction_id)
  GROUP BY ALL) d
WHERE s.account_id = d.account_id AND s.transaction_id = d.transaction_id AND s.seq < d.last`
	replaceStored = `
DELETE FROM transactions t USING load_transactions s
WHERE t.partner_id = {P} AND t.account_id = s.account_id AND t.transaction_id = s.transaction_id`
	insertStaged = `
INSERT INTO transactions (partner_id, account_id, transaction_id, transaction_type, posted_at, posted_on,
  originated_at, originated_on, amount, memo, original_name, check_number, source_file, source_line, updated_at)
SELECT {P}, account_id, transaction_id, transaction_type, posted_at, posted_on,
  originated_at, originated_on, amount, memo, original_name, check_number, {SRC}, line, {NOW}
FROM load_transactions WHERE action = 'upsert'`
	dropLoadTables = `DROP TABLE load_transactions; DROP TABLE load_suspects`
)

func (l *Load) mergeTransactions(ctx context.Context) error {
	var stmts []string
	if l.suspectsStaged {
		stmts = append(stmts, dedupeSuspects)
	}
	if l.hadTransactions {
		stmts = append(stmts, replaceStored)
	}
	stmts = append(stmts, insertStaged, dropLoadTables)
	for _, stmt := range stmts {
		if err := l.exec(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

// IngestRecord is the audit row written with the file's data.
type IngestRecord struct {
	FileType string
	Status   string
	Bytes    int64
	Report   any // marshalled to JSON
}

// Commit records the ingest and makes the file's changes visible at once.
func (l *Load) Commit(ctx context.Context, rec IngestRecord) error {
	if l.done {
		return fmt.Errorf("warehouse: load already finished")
	}
	l.done = true
	defer l.conn.Close()
	if err := l.mergeTransactions(ctx); err != nil {
		l.rollback()
		return err
	}
	report, err := json.Marshal(rec.Report)
	if err != nil {
		l.rollback()
		return err
	}
	_, err = l.conn.ExecContext(ctx, `INSERT INTO ingests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		l.opts.Partner, l.opts.Source, rec.FileType, l.opts.AsOf.Format(time.DateOnly), l.started, time.Now().UTC(),
		rec.Status, rec.Bytes, string(report))
	if err == nil {
		_, err = l.conn.ExecContext(ctx, "COMMIT")
	}
	if err != nil {
		l.rollback()
		return fmt.Errorf("warehouse: commit: %w", err)
	}
	return nil
}

// Rollback abandons the file: the warehouse stays as it was.
func (l *Load) Rollback() {
	if l.done {
		return
	}
	l.done = true
	l.rollback()
	l.conn.Close()
}

func (l *Load) rollback() {
	// A fresh context: the caller's may be cancelled, and the rollback must still run.
	_, _ = l.conn.ExecContext(context.Background(), "ROLLBACK")
}
