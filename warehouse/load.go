package warehouse

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
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
	if _, err := l.conn.ExecContext(ctx, stmt); err != nil {
		first, _, _ := strings.Cut(strings.TrimSpace(stmt), "\n")
		return fmt.Errorf("warehouse: %s: %w", first, err)
	}
	return nil
}

// stage copies a record batch into a temporary table. The Arrow view can be
// scanned only once, so the rows land in a table the statements can reuse.
func (l *Load) stage(ctx context.Context, name string, rec arrow.RecordBatch) error {
	defer rec.Release()
	reader, err := array.NewRecordReader(rec.Schema(), []arrow.RecordBatch{rec})
	if err != nil {
		return err
	}
	defer reader.Release()
	view := "arrow_" + name
	release, err := l.arrow.RegisterView(reader, view)
	if err != nil {
		return fmt.Errorf("stage %s: %w", name, err)
	}
	defer release()
	return l.exec(ctx, fmt.Sprintf("CREATE OR REPLACE TEMP TABLE %s AS SELECT * FROM %s", name, view))
}

// Apply stages a batch and merges it into the warehouse inside the file's
// transaction. Within the batch the last occurrence of a key wins, and a
// Delete removes what is stored and what came before it in the file: the
// result equals applying the rows one by one in file order.
func (l *Load) Apply(ctx context.Context, b *stages.Batch) (Applied, error) {
	var out Applied
	staged := []struct {
		name string
		rec  arrow.RecordBatch
	}{
		{"b_users", usersRecord(b.Users)},
		{"b_accounts", accountsRecord(b.Accounts)},
		{"b_balances", balancesRecord(b.Accounts)},
		{"b_properties", propertiesRecord(b.Accounts)},
		{"b_transactions", transactionsRecord(b.Transactions)},
	}
	for i, s := range staged {
		if err := l.stage(ctx, s.name, s.rec); err != nil {
			for _, rest := range staged[i+1:] {
				rest.rec.Release()
			}
			return out, err
		}
	}
	if err := l.checkParents(ctx, b, &out); err != nil {
		return out, err
	}
	for _, stmt := range resolveAndMerge {
		if err := l.exec(ctx, stmt); err != nil {
			return out, err
		}
	}
	return out, nil
}

// checkParents rejects rows whose user or account the warehouse does not know
// (accounts and transactions files) and skips transactions of investment accounts.
func (l *Load) checkParents(ctx context.Context, b *stages.Batch, out *Applied) error {
	needsUser, needsAccount := false, false
	for i := range b.Accounts {
		needsUser = needsUser || b.Accounts[i].NeedsUser
	}
	for i := range b.Transactions {
		needsAccount = needsAccount || b.Transactions[i].NeedsAccount
	}
	if !needsUser && !needsAccount {
		return nil
	}
	stmts := []string{`
CREATE OR REPLACE TEMP TABLE b_rejected AS
SELECT 'account' AS context, a.account_id AS identifier, 'PartnerCustomerId' AS field,
       'unknown user ' || a.partner_customer_id || ': no such user for partner ' || {P} AS message, a.line, a.seq
FROM b_accounts a
WHERE a.needs_user AND a.action = 'upsert'
  AND NOT EXISTS (SELECT 1 FROM users u WHERE u.partner_id = {P} AND u.partner_customer_id = a.partner_customer_id)
UNION ALL
SELECT 'transaction', t.transaction_id, 'AccountId',
       'unknown account ' || t.account_id || ': no such account for partner ' || {P}, t.line, t.seq
FROM b_transactions t
WHERE t.needs_account AND t.action = 'upsert'
  AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.partner_id = {P} AND a.account_id = t.account_id)
  AND NOT EXISTS (SELECT 1 FROM b_accounts a WHERE a.account_id = t.account_id AND a.action = 'upsert')`, `
CREATE OR REPLACE TEMP TABLE b_skipped AS
SELECT t.seq FROM b_transactions t JOIN accounts a ON a.partner_id = {P} AND a.account_id = t.account_id
WHERE t.needs_account AND t.action = 'upsert' AND a.account_type = 'investment'`,
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

// resolveAndMerge resolves the actions of the staged batch (the r_ tables,
// computed before anything changes) and then merges them.
var resolveAndMerge = []string{
	// Users: the last Delete of each key cascades; the last event decides.
	`CREATE OR REPLACE TEMP TABLE r_user_deletes AS
	 SELECT partner_customer_id, max(seq) AS seq FROM b_users WHERE action = 'delete' GROUP BY ALL`,
	`CREATE OR REPLACE TEMP TABLE r_users AS
	 SELECT * EXCLUDE (rn) FROM (
	   SELECT *, row_number() OVER (PARTITION BY partner_customer_id ORDER BY seq DESC) AS rn FROM b_users)
	 WHERE rn = 1 AND action = 'upsert'`,
	// Accounts: an upsert survives unless its user is deleted later in the batch.
	`CREATE OR REPLACE TEMP TABLE r_account_deletes AS
	 SELECT account_id, max(seq) AS seq FROM b_accounts WHERE action = 'delete' GROUP BY ALL`,
	`CREATE OR REPLACE TEMP TABLE r_accounts_last AS
	 SELECT * EXCLUDE (rn) FROM (
	   SELECT *, row_number() OVER (PARTITION BY account_id ORDER BY seq DESC) AS rn FROM b_accounts)
	 WHERE rn = 1`,
	`CREATE OR REPLACE TEMP TABLE r_accounts AS
	 SELECT a.* FROM r_accounts_last a LEFT JOIN r_user_deletes d USING (partner_customer_id)
	 WHERE a.action = 'upsert' AND a.seq > coalesce(d.seq, -1)`,
	// Accounts whose stored rows go: deleted, or owned by a deleted user.
	`CREATE OR REPLACE TEMP TABLE r_gone AS
	 SELECT account_id FROM r_account_deletes
	 UNION
	 SELECT a.account_id FROM accounts a JOIN r_user_deletes d USING (partner_customer_id) WHERE a.partner_id = {P}`,
	// Transactions: an upsert survives unless its account or the account's
	// owner is deleted later in the batch.
	`CREATE OR REPLACE TEMP TABLE r_transactions_last AS
	 SELECT * EXCLUDE (rn) FROM (
	   SELECT *, row_number() OVER (PARTITION BY account_id, transaction_id ORDER BY seq DESC) AS rn FROM b_transactions)
	 WHERE rn = 1`,
	`CREATE OR REPLACE TEMP TABLE r_transactions AS
	 SELECT t.* FROM r_transactions_last t
	 LEFT JOIN r_account_deletes ad ON ad.account_id = t.account_id
	 LEFT JOIN r_accounts_last al ON al.account_id = t.account_id
	 LEFT JOIN (SELECT account_id, partner_customer_id FROM accounts WHERE partner_id = {P}) sa ON sa.account_id = t.account_id
	 LEFT JOIN r_user_deletes ud ON ud.partner_customer_id = coalesce(al.partner_customer_id, sa.partner_customer_id)
	 WHERE t.action = 'upsert' AND t.seq > coalesce(ad.seq, -1) AND t.seq > coalesce(ud.seq, -1)`,

	// Deletes and their cascades.
	`DELETE FROM transactions WHERE partner_id = {P} AND account_id IN (SELECT account_id FROM r_gone)`,
	`DELETE FROM balances WHERE partner_id = {P} AND account_id IN (SELECT account_id FROM r_gone)`,
	`DELETE FROM account_properties WHERE partner_id = {P} AND account_id IN (SELECT account_id FROM r_gone)`,
	`DELETE FROM accounts WHERE partner_id = {P} AND account_id IN (SELECT account_id FROM r_gone)`,
	`DELETE FROM users WHERE partner_id = {P} AND partner_customer_id IN (SELECT partner_customer_id FROM r_user_deletes)`,
	`DELETE FROM transactions t USING r_transactions_last d
	 WHERE t.partner_id = {P} AND d.action = 'delete' AND t.account_id = d.account_id AND t.transaction_id = d.transaction_id`,

	// Upserts.
	`MERGE INTO users t USING r_users s
	 ON t.partner_id = {P} AND t.partner_customer_id = s.partner_customer_id
	 WHEN MATCHED THEN UPDATE SET first_name = s.first_name, last_name = s.last_name, email = s.email,
	   zip_code = s.zip_code, user_experience = s.user_experience,
	   source_file = {SRC}, source_line = s.line, updated_at = {NOW}
	 WHEN NOT MATCHED THEN INSERT (partner_id, partner_customer_id, first_name, last_name, email, zip_code,
	   user_experience, source_file, source_line, updated_at)
	   VALUES ({P}, s.partner_customer_id, s.first_name, s.last_name, s.email, s.zip_code,
	   s.user_experience, {SRC}, s.line, {NOW})`,
	`MERGE INTO accounts t USING r_accounts s
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
	`DELETE FROM balances WHERE partner_id = {P} AND as_of = {D} AND account_id IN (SELECT account_id FROM r_accounts)`,
	`INSERT INTO balances (partner_id, account_id, balance_type, amount, currency_code, as_of, updated_at)
	 SELECT {P}, b.account_id, b.balance_type, b.amount, b.currency_code, {D}, {NOW}
	 FROM b_balances b JOIN r_accounts a ON a.seq = b.account_seq`,
	`DELETE FROM account_properties WHERE partner_id = {P} AND account_id IN (SELECT account_id FROM r_accounts)`,
	`INSERT INTO account_properties (partner_id, account_id, property_type, property_value, updated_at)
	 SELECT {P}, p.account_id, p.property_type, p.property_value, {NOW}
	 FROM b_properties p JOIN r_accounts a ON a.seq = p.account_seq`,
	`MERGE INTO transactions t USING r_transactions s
	 ON t.partner_id = {P} AND t.account_id = s.account_id AND t.transaction_id = s.transaction_id
	 WHEN MATCHED THEN UPDATE SET transaction_type = s.transaction_type, posted_at = s.posted_at,
	   posted_on = s.posted_on, originated_at = s.originated_at, originated_on = s.originated_on,
	   amount = s.amount, memo = s.memo, original_name = s.original_name, check_number = s.check_number,
	   source_file = {SRC}, source_line = s.line, updated_at = {NOW}
	 WHEN NOT MATCHED THEN INSERT (partner_id, account_id, transaction_id, transaction_type, posted_at, posted_on,
	   originated_at, originated_on, amount, memo, original_name, check_number, source_file, source_line, updated_at)
	   VALUES ({P}, s.account_id, s.transaction_id, s.transaction_type, s.posted_at, s.posted_on,
	   s.originated_at, s.originated_on, s.amount, s.memo, s.original_name, s.check_number, {SRC}, s.line, {NOW})`,
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
