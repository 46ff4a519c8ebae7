package warehouse

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
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
	l := &Load{conn: conn, opts: opts, started: time.Now().UTC()}
	err = conn.Raw(func(dc any) error {
		a, err := duckdb.NewArrowFromConn(dc.(driver.Conn))
		l.arrow = a
		return err
	})
	if err == nil {
		_, err = conn.ExecContext(ctx, "BEGIN TRANSACTION")
	}
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
	defer func() {
		if os.Getenv("FLATFILER_TRACE_SQL") != "" {
			first, _, _ := strings.Cut(strings.TrimSpace(stmt), "\n")
			fmt.Fprintf(os.Stderr, "%8.1fms %s\n", float64(time.Since(t0).Microseconds())/1000, first[:min(len(first), 90)])
		}
	}()
	if _, err := l.conn.ExecContext(ctx, stmt); err != nil {
		first, _, _ := strings.Cut(strings.TrimSpace(stmt), "\n")
		return fmt.Errorf("warehouse: %s: %w", first, err)
	}
	return nil
}

// stage copies a record batch into a temporary table. An Arrow view can be
// scanned only once, so rows that several statements read land in a table.
func (l *Load) stage(ctx context.Context, name string, rec arrow.RecordBatch) error {
	release, err := l.view(rec, "arrow_"+name)
	if err != nil {
		return err
	}
	defer release()
	return l.exec(ctx, fmt.Sprintf("CREATE OR REPLACE TEMP TABLE %s AS SELECT * FROM arrow_%s", name, name))
}

// Apply merges a resolved batch into the warehouse inside the file's
// transaction. The batch is staged as Arrow record batches; cascades of
// deletes are decided here against the stored state, by sequence number, so
// that the result equals applying the file's rows one by one in file order.
func (l *Load) Apply(ctx context.Context, r *stages.Resolved) (Applied, error) {
	var out Applied
	needsUser, needsAccount := false, false
	b := r.Batch
	for _, i := range r.Accounts {
		needsUser = needsUser || b.Accounts[i].NeedsUser
	}
	for _, i := range r.Transactions {
		needsAccount = needsAccount || b.Transactions[i].NeedsAccount
	}
	tables := []struct {
		name string
		rec  func() arrow.RecordBatch
	}{
		{"b_users", func() arrow.RecordBatch { return usersRecord(b.Users, r.Users) }},
		{"b_user_deletes", func() arrow.RecordBatch { return deletesRecord(r.UserDeletes) }},
		{"b_accounts", func() arrow.RecordBatch { return accountsRecord(b.Accounts, r.Accounts) }},
		{"b_account_deletes", func() arrow.RecordBatch { return deletesRecord(r.AccountDeletes) }},
		{"b_balances", func() arrow.RecordBatch { return balancesRecord(b.Accounts, r.Accounts) }},
		{"b_properties", func() arrow.RecordBatch { return propertiesRecord(b.Accounts, r.Accounts) }},
		{"b_transaction_deletes", func() arrow.RecordBatch { return transactionDeletesRecord(r.TransactionDeletes) }},
	}
	for _, t := range tables {
		if err := l.stage(ctx, t.name, t.rec()); err != nil {
			return out, err
		}
	}
	// MERGE cannot read an Arrow view directly (the scan is a one-shot stream
	// and DuckDB 1.4 crashes on it), so transactions are staged like the rest.
	if err := l.stage(ctx, "b_transactions", transactionsRecord(b.Transactions, r.Transactions, r.OwnerKnown)); err != nil {
		return out, err
	}
	if needsUser || needsAccount {
		if err := l.checkParents(ctx, &out); err != nil {
			return out, err
		}
	}
	stmts := []string{}
	if len(r.UserDeletes) > 0 {
		stmts = append(stmts, dropOrphanedByStoredOwner)
	}
	if r.HasDeletes() {
		stmts = append(stmts, cascadeDeletes...)
	}
	if len(r.TransactionDeletes) > 0 {
		stmts = append(stmts, deleteTransactions)
	}
	if len(r.Users) > 0 {
		stmts = append(stmts, mergeUsers)
	}
	if len(r.Accounts) > 0 {
		stmts = append(stmts, mergeAccounts...)
	}
	if len(r.Transactions) > 0 {
		stmts = append(stmts, mergeTransactions...)
	}
	for _, stmt := range stmts {
		if err := l.exec(ctx, stmt); err != nil {
			return out, err
		}
	}
	return out, nil
}

// view registers rec as a temporary view that can be scanned once.
func (l *Load) view(rec arrow.RecordBatch, name string) (func(), error) {
	defer rec.Release()
	reader, err := array.NewRecordReader(rec.Schema(), []arrow.RecordBatch{rec})
	if err != nil {
		return nil, err
	}
	release, err := l.arrow.RegisterView(reader, name)
	if err != nil {
		reader.Release()
		return nil, fmt.Errorf("stage %s: %w", name, err)
	}
	return func() { release(); reader.Release() }, nil
}

// checkParents rejects rows whose user or account the warehouse does not know
// (accounts and transactions files) and skips transactions of investment accounts.
func (l *Load) checkParents(ctx context.Context, out *Applied) error {
	stmts := []string{`
CREATE OR REPLACE TEMP TABLE b_rejected AS
SELECT 'account' AS context, a.account_id AS identifier, 'PartnerCustomerId' AS field,
       'unknown user ' || a.partner_customer_id || ': no such user for partner ' || {P} AS message, a.line, a.seq
FROM b_accounts a
WHERE a.needs_user
  AND NOT EXISTS (SELECT 1 FROM users u WHERE u.partner_id = {P} AND u.partner_customer_id = a.partner_customer_id)
UNION ALL
SELECT 'transaction', t.transaction_id, 'AccountId',
       'unknown account ' || t.account_id || ': no such account for partner ' || {P}, t.line, t.seq
FROM b_transactions t
WHERE t.needs_account
  AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.partner_id = {P} AND a.account_id = t.account_id)
  AND NOT EXISTS (SELECT 1 FROM b_accounts a WHERE a.account_id = t.account_id)`, `
CREATE OR REPLACE TEMP TABLE b_skipped AS
SELECT t.seq FROM b_transactions t JOIN accounts a ON a.partner_id = {P} AND a.account_id = t.account_id
WHERE t.needs_account AND a.account_type = 'investment'`,
		`DELETE FROM b_accounts WHERE seq IN (SELECT seq FROM b_rejected)`,
		`DELETE FROM b_balances WHERE account_seq IN (SELECT seq FROM b_rejected)`,
		`DELETE FROM b_properties WHERE account_seq IN (SELECT seq FROM b_rejected)`,
		`DELETE FROM b_transactions WHERE seq IN (SELECT seq FROM b_rejected UNION ALL SELECT seq FROM b_skipped)`,
	}
	for _, stmt := range stmts {
		if err := l.exec(ctx, stmt); err != nil {
			return err
		}
	}
	row := l.conn.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM b_rejected WHERE context = 'account'),
		(SELECT count(*) FROM b_rejected WHERE context = 'transaction'),
		(SELECT count(*) FROM b_skipped)`)
	if err := row.Scan(&out.Rejected.Accounts.Error, &out.Rejected.Transactions.Error, &out.Skipped); err != nil {
		return fmt.Errorf("warehouse: count rejections: %w", err)
	}
	if out.Rejected.Accounts.Error+out.Rejected.Transactions.Error == 0 || l.opts.MaxRejections <= 0 {
		return nil
	}
	rows, err := l.conn.QueryContext(ctx, `SELECT context, identifier, field, message, line FROM b_rejected ORDER BY seq LIMIT ?`, l.opts.MaxRejections)
	if err != nil {
		return fmt.Errorf("warehouse: list rejections: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r stages.Rejection
		if err := rows.Scan(&r.Context, &r.Identifier, &r.Field, &r.Message, &r.Line); err != nil {
			return err
		}
		out.Rejections = append(out.Rejections, r)
	}
	return rows.Err()
}

// A user deleted in the batch takes with it the transactions that came before
// the delete on the accounts it owns; when the batch does not name such an
// account, its owner is the stored one.
const dropOrphanedByStoredOwner = `
DELETE FROM b_transactions t USING accounts a, b_user_deletes d
WHERE NOT t.owner_known AND a.partner_id = {P} AND a.account_id = t.account_id
  AND a.partner_customer_id = d.key AND t.seq < d.seq`

// cascadeDeletes remove deleted users and accounts and everything stored under them.
var cascadeDeletes = []string{
	`CREATE OR REPLACE TEMP TABLE r_gone AS
	 SELECT key AS account_id FROM b_account_deletes
	 UNION
	 SELECT a.account_id FROM accounts a JOIN b_user_deletes d ON a.partner_customer_id = d.key WHERE a.partner_id = {P}`,
	`DELETE FROM transactions WHERE partner_id = {P} AND account_id IN (SELECT account_id FROM r_gone)`,
	`DELETE FROM balances WHERE partner_id = {P} AND account_id IN (SELECT account_id FROM r_gone)`,
	`DELETE FROM account_properties WHERE partner_id = {P} AND account_id IN (SELECT account_id FROM r_gone)`,
	`DELETE FROM accounts WHERE partner_id = {P} AND account_id IN (SELECT account_id FROM r_gone)`,
	`DELETE FROM users WHERE partner_id = {P} AND partner_customer_id IN (SELECT key FROM b_user_deletes)`,
}

const deleteTransactions = `
DELETE FROM transactions t USING b_transaction_deletes d
WHERE t.partner_id = {P} AND t.account_id = d.account_id AND t.transaction_id = d.transaction_id`

const mergeUsers = `
MERGE INTO users t USING b_users s
ON t.partner_id = {P} AND t.partner_customer_id = s.partner_customer_id
WHEN MATCHED THEN UPDATE SET first_name = s.first_name, last_name = s.last_name, email = s.email,
  zip_code = s.zip_code, user_experience = s.user_experience,
  source_file = {SRC}, source_line = s.line, updated_at = {NOW}
WHEN NOT MATCHED THEN INSERT (partner_id, partner_customer_id, first_name, last_name, email, zip_code,
  user_experience, source_file, source_line, updated_at)
  VALUES ({P}, s.partner_customer_id, s.first_name, s.last_name, s.email, s.zip_code,
  s.user_experience, {SRC}, s.line, {NOW})`

var mergeAccounts = []string{`
MERGE INTO accounts t USING b_accounts s
ON t.partner_id = {P} AND t.account_id = s.account_id
WHEN MATCHED THEN UPDATE SET partner_customer_id = s.partner_customer_id, account_number = s.account_number,
  fi_name = s.fi_name, nickname = s.nickname, account_type = s.account_type, account_class = s.account_class,
  state = 'open', account_experience = s.account_experience,
  source_file = {SRC}, source_line = s.line, updated_at = {NOW}
WHEN NOT MATCHED THEN INSERT (partner_id, partner_customer_id, account_id, account_number, fi_name, nickname,
  account_type, account_class, state, account_experience, source_file, source_line, updated_at)
  VALUES ({P}, s.partner_customer_id, s.account_id, s.account_number, s.fi_name, s.nickname,
  s.account_type, s.account_class, 'open', s.account_experience, {SRC}, s.line, {NOW})`,
	// A snapshot is keyed by (account, as_of): the same key again replaces it.
	`DELETE FROM balances WHERE partner_id = {P} AND as_of = {D} AND account_id IN (SELECT account_id FROM b_accounts)`,
	`INSERT INTO balances (partner_id, account_id, balance_type, amount, currency_code, as_of, updated_at)
	 SELECT {P}, b.account_id, b.balance_type, b.amount, b.currency_code, {D}, {NOW}
	 FROM b_balances b JOIN b_accounts a ON a.seq = b.account_seq`,
	`DELETE FROM account_properties WHERE partner_id = {P} AND account_id IN (SELECT account_id FROM b_accounts)`,
	`INSERT INTO account_properties (partner_id, account_id, property_type, property_value, updated_at)
	 SELECT {P}, p.account_id, p.property_type, p.property_value, {NOW}
	 FROM b_properties p JOIN b_accounts a ON a.seq = p.account_seq`,
}

// mergeTransactions replaces stored transactions with the batch's. As a
// DELETE of the matching keys and an INSERT it is a merge that measured about
// three times faster than MERGE INTO on this table (README, Performance).
var mergeTransactions = []string{`
DELETE FROM transactions t USING b_transactions s
WHERE t.partner_id = {P} AND t.account_id = s.account_id AND t.transaction_id = s.transaction_id`, `
INSERT INTO transactions (partner_id, account_id, transaction_id, transaction_type, posted_at, posted_on,
  originated_at, originated_on, amount, memo, original_name, check_number, source_file, source_line, updated_at)
SELECT {P}, s.account_id, s.transaction_id, s.transaction_type, s.posted_at, s.posted_on,
  s.originated_at, s.originated_on, s.amount, s.memo, s.original_name, s.check_number, {SRC}, s.line, {NOW}
FROM b_transactions s`}

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
