package warehouse

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// TransactionEdit is what a user changed on one transaction. A nil field
// keeps what was there: the previous edit's, else the enrichment's.
type TransactionEdit struct {
	Partner, Account, Transaction string
	Nickname                      *string
	// Tags: nil keeps; empty untags; else the user's tags with the parts of
	// the absolute amount they carry.
	Tags   []TagPart
	Edited time.Time
}

// EditTransaction stores a user's edit of a stored transaction, merged
// with any earlier edit of it.
func (s *Store) EditTransaction(ctx context.Context, e TransactionEdit) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db().BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("warehouse: edit transaction: %w", err)
	}
	defer tx.Rollback()
	var exists bool
	if err := tx.QueryRowContext(ctx, `SELECT count(*) > 0 FROM transactions WHERE partner_id = ? AND account_id = ? AND transaction_id = ?`,
		e.Partner, e.Account, e.Transaction).Scan(&exists); err != nil {
		return fmt.Errorf("warehouse: edit transaction: %w", err)
	}
	if !exists {
		return fmt.Errorf("transaction %s of account %s: %w", e.Transaction, e.Account, ErrNotFound)
	}
	var oldNickname, oldTags sql.NullString
	err = tx.QueryRowContext(ctx, `SELECT nickname, `+tagsJSON("tags")+`
		FROM transaction_edits WHERE partner_id = ? AND account_id = ? AND transaction_id = ?`,
		e.Partner, e.Account, e.Transaction).Scan(&oldNickname, &oldTags)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("warehouse: edit transaction: %w", err)
	}
	var nickname any
	if e.Nickname != nil {
		nickname = *e.Nickname
	} else if oldNickname.Valid {
		nickname = oldNickname.String
	}
	var tags any
	if e.Tags != nil {
		b, err := json.Marshal(tagPartsJSON(e.Tags))
		if err != nil {
			return err
		}
		tags = string(b)
	} else if oldTags.Valid {
		tags = oldTags.String
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM transaction_edits WHERE partner_id = ? AND account_id = ? AND transaction_id = ?`,
		e.Partner, e.Account, e.Transaction); err != nil {
		return fmt.Errorf("warehouse: edit transaction: %w", err)
	}
	// Tags travel as JSON with cents, so amounts stay exact.
	if _, err := tx.ExecContext(ctx, `INSERT INTO transaction_edits
		SELECT ?, ?, ?, ?, CASE WHEN ?::VARCHAR IS NULL THEN NULL ELSE
			list_transform(CAST(json(?::VARCHAR) AS STRUCT(name VARCHAR, cents BIGINT)[]),
				u -> {'name': u.name, 'amount': CAST(u.cents AS DECIMAL(18,2)) / 100}) END, ?`,
		e.Partner, e.Account, e.Transaction, nickname, tags, tags, e.Edited.UTC()); err != nil {
		return fmt.Errorf("warehouse: edit transaction: %w", err)
	}
	s.edited.add(e.Partner, e.Account)
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("warehouse: edit transaction: %w", err)
	}
	return nil
}

// tagsJSON reads a transaction_edits tags column as JSON with cents (NULL
// stays NULL), the form decodeTagParts and EditTransaction's insert take,
// so amounts stay exact.
func tagsJSON(column string) string {
	return `CASE WHEN ` + column + ` IS NULL THEN NULL ELSE to_json(list_transform(` + column +
		`, u -> {'name': u.name, 'cents': CAST(u.amount * 100 AS BIGINT)}))::VARCHAR END`
}

type tagPartJSON struct {
	Name  string `json:"name"`
	Cents int64  `json:"cents"`
}

func tagPartsJSON(parts []TagPart) []tagPartJSON {
	out := make([]tagPartJSON, len(parts))
	for i, p := range parts {
		out[i] = tagPartJSON{p.Name, p.Cents}
	}
	return out
}

func decodeTagParts(s string) ([]TagPart, error) {
	var parts []tagPartJSON
	if err := json.Unmarshal([]byte(s), &parts); err != nil {
		return nil, err
	}
	out := make([]TagPart, len(parts))
	for i, p := range parts {
		out[i] = TagPart{p.Name, p.Cents}
	}
	return out, nil
}

// NetworthAccount is a user's manual networth account.
type NetworthAccount struct {
	ID        int64
	Partner   string
	User      string
	Name      string
	Type      string // asset or debt
	Cents     int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// NetworthAccounts returns the user's manual networth accounts by id.
func (s *Store) NetworthAccounts(ctx context.Context, partnerID, user string) ([]NetworthAccount, error) {
	if !s.manualNetworth.has(partnerID, user) {
		return nil, nil
	}
	rows, err := s.db().QueryContext(ctx, `SELECT networth_account_id, name, account_type, CAST(balance * 100 AS BIGINT), created_at, updated_at
		FROM networth_accounts WHERE partner_id = ? AND partner_customer_id = ? ORDER BY networth_account_id`, partnerID, user)
	if err != nil {
		return nil, fmt.Errorf("warehouse: networth accounts: %w", err)
	}
	defer rows.Close()
	var out []NetworthAccount
	for rows.Next() {
		a := NetworthAccount{Partner: partnerID, User: user}
		if err := rows.Scan(&a.ID, &a.Name, &a.Type, &a.Cents, &a.CreatedAt, &a.UpdatedAt); err != nil {
			return nil, fmt.Errorf("warehouse: networth accounts: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// AddNetworthAccount stores a new manual account and returns it with its id.
func (s *Store) AddNetworthAccount(ctx context.Context, a NetworthAccount) (NetworthAccount, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.manualNetworth.add(a.Partner, a.User)
	err := s.db().QueryRowContext(ctx, `INSERT INTO networth_accounts
		SELECT ?, ?, (SELECT coalesce(max(networth_account_id), 0) + 1 FROM networth_accounts), ?, ?, CAST(? AS DECIMAL(18,2)) / 100, ?, ?
		RETURNING networth_account_id`, a.Partner, a.User, a.Name, a.Type, a.Cents, a.CreatedAt.UTC(), a.CreatedAt.UTC()).Scan(&a.ID)
	if err != nil {
		return a, fmt.Errorf("warehouse: add networth account: %w", err)
	}
	a.UpdatedAt = a.CreatedAt
	return a, nil
}

// UpdateNetworthAccount replaces a manual account's name, type and balance.
func (s *Store) UpdateNetworthAccount(ctx context.Context, a NetworthAccount) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	res, err := s.db().ExecContext(ctx, `UPDATE networth_accounts SET name = ?, account_type = ?, balance = CAST(? AS DECIMAL(18,2)) / 100, updated_at = ?
		WHERE partner_id = ? AND partner_customer_id = ? AND networth_account_id = ?`,
		a.Name, a.Type, a.Cents, a.UpdatedAt.UTC(), a.Partner, a.User, a.ID)
	return affectedOne(res, err, fmt.Sprintf("networth account %d", a.ID))
}

// DeleteNetworthAccount removes a manual account.
func (s *Store) DeleteNetworthAccount(ctx context.Context, partnerID, user string, id int64) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	res, err := s.db().ExecContext(ctx, `DELETE FROM networth_accounts WHERE partner_id = ? AND partner_customer_id = ? AND networth_account_id = ?`,
		partnerID, user, id)
	return affectedOne(res, err, fmt.Sprintf("networth account %d", id))
}

func affectedOne(res sql.Result, err error, what string) error {
	if err != nil {
		return fmt.Errorf("warehouse: %s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("warehouse: %s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}

// UserTags returns the tags the user gave transactions or rules, sorted.
func (s *Store) UserTags(ctx context.Context, partnerID, user string) ([]string, error) {
	rows, err := s.db().QueryContext(ctx, `SELECT DISTINCT name FROM (
		SELECT tag AS name FROM tag_rules WHERE partner_id = ? AND partner_customer_id = ?
		UNION ALL SELECT unnest(tags).name FROM transaction_edits WHERE partner_id = ? AND account_id IN (
			SELECT account_id FROM (SELECT * FROM accounts WHERE partner_customer_id = ?) WHERE partner_id = ?)
	) ORDER BY name`, partnerID, user, partnerID, user, partnerID)
	if err != nil {
		return nil, fmt.Errorf("warehouse: user tags: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("warehouse: user tags: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
