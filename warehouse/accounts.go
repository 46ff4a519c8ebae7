package warehouse

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/flatfiler/flatfiler/stages"
)

// AccountEdit is what a user changed on one of their accounts (the spec's
// PUT accounts/:account_id:). A nil field keeps what was there.
type AccountEdit struct {
	Partner, Owner, Account string
	// Name and DisplayType are the user's: they overlay the FI's and
	// outlive its re-sends (account_edits). Empty: the FI's again.
	Name, DisplayType *string
	// Type changes the stored account's type and so its class, as a file
	// would; the FI's next file sets it again.
	Type   *string
	Edited time.Time
}

// ErrInvalid is an edit that breaks a rule of the data (an account type off
// the closed list); its message names the field.
var ErrInvalid = errors.New("invalid")

// EditAccount stores a user's edit of one of their accounts.
func (s *Store) EditAccount(ctx context.Context, e AccountEdit) error {
	var class string
	if e.Type != nil {
		var ok bool
		if class, ok = stages.AccountClass(*e.Type); !ok {
			return fmt.Errorf("account_type: %q is not one of %s: %w", *e.Type, stages.AllAccountTypes(), ErrInvalid)
		}
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	tx, err := s.db().BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("warehouse: edit account: %w", err)
	}
	defer tx.Rollback()
	var exists bool
	if err := tx.QueryRowContext(ctx, `SELECT count(*) > 0 FROM accounts WHERE partner_id = ? AND partner_customer_id = ? AND account_id = ?`,
		e.Partner, e.Owner, e.Account).Scan(&exists); err != nil {
		return fmt.Errorf("warehouse: edit account: %w", err)
	}
	if !exists {
		return fmt.Errorf("account %s of user %s: %w", e.Account, e.Owner, ErrNotFound)
	}
	if e.Type != nil {
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET account_type = ?, account_class = ? WHERE partner_id = ? AND account_id = ?`,
			*e.Type, class, e.Partner, e.Account); err != nil {
			return fmt.Errorf("warehouse: edit account: %w", err)
		}
	}
	if e.Name != nil || e.DisplayType != nil {
		if err := mergeAccountEdit(ctx, tx, e); err != nil {
			return err
		}
		s.accountEdited.add(e.Partner, e.Account)
	}
	var touched map[string][]directoryAccount
	if s.directory != nil {
		rows, err := tx.QueryContext(ctx, `SELECT a.partner_id, a.partner_customer_id, `+directoryColumns+`
			FROM accounts a WHERE a.partner_id = ? AND a.partner_customer_id = ?`, e.Partner, e.Owner)
		if err != nil {
			return fmt.Errorf("warehouse: edit account: %w", err)
		}
		touched = map[string][]directoryAccount{}
		if err := s.directory.scan(rows, touched); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("warehouse: edit account: %w", err)
	}
	if touched != nil {
		s.directory.replace(touched)
	}
	return nil
}

// mergeAccountEdit replaces the account's edit row with e merged into it;
// an empty value goes back to the FI's.
func mergeAccountEdit(ctx context.Context, tx *sql.Tx, e AccountEdit) error {
	var name, display sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT name, display_account_type FROM account_edits WHERE partner_id = ? AND account_id = ?`,
		e.Partner, e.Account).Scan(&name, &display)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("warehouse: edit account: %w", err)
	}
	set := func(old *sql.NullString, v *string) {
		if v != nil {
			*old = sql.NullString{String: *v, Valid: *v != ""}
		}
	}
	set(&name, e.Name)
	set(&display, e.DisplayType)
	if _, err := tx.ExecContext(ctx, `DELETE FROM account_edits WHERE partner_id = ? AND account_id = ?`, e.Partner, e.Account); err != nil {
		return fmt.Errorf("warehouse: edit account: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO account_edits VALUES (?, ?, ?, ?, ?)`,
		e.Partner, e.Account, name, display, e.Edited.UTC()); err != nil {
		return fmt.Errorf("warehouse: edit account: %w", err)
	}
	return nil
}

// withAccountEdits sets the user's names and display types on accounts.
func (s *Store) withAccountEdits(ctx context.Context, partnerID string, accounts []Account) error {
	if !s.accountEdited.anyAccount(partnerID, accounts) {
		return nil
	}
	ids := make([]string, len(accounts))
	for i, a := range accounts {
		ids[i] = a.ID
	}
	in, args := inList(ids)
	rows, err := s.db().QueryContext(ctx, `SELECT account_id, coalesce(name, ''), coalesce(display_account_type, '')
		FROM account_edits WHERE partner_id = ? AND account_id IN (`+in+`)`, append([]any{partnerID}, args...)...)
	if err != nil {
		return fmt.Errorf("warehouse: account edits: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, name, display string
		if err := rows.Scan(&id, &name, &display); err != nil {
			return fmt.Errorf("warehouse: account edits: %w", err)
		}
		for i := range accounts {
			if accounts[i].ID == id {
				accounts[i].UserName, accounts[i].DisplayType = name, display
			}
		}
	}
	return rows.Err()
}

// Latest is an account's newest stored transaction.
type Latest struct {
	TransactionID string
	PostedOn      time.Time
}

// LatestTransactions returns, by account id, the newest stored transaction
// of each of the accounts (a user's, from Accounts) that has any: what a
// pull harvest asks after (LastTransactionId) and keeps from.
func (s *Store) LatestTransactions(ctx context.Context, accounts []Account) (map[string]Latest, error) {
	out := map[string]Latest{}
	if len(accounts) == 0 {
		return out, nil
	}
	q := byAccountKey(accounts, func(keys string) string {
		return `SELECT account_id, arg_max(transaction_id, (posted_at, transaction_id)), max(posted_on)
		FROM transactions WHERE account_key IN (` + keys + `) GROUP BY account_id`
	})
	rows, err := s.db().QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("warehouse: latest transactions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var l Latest
		if err := rows.Scan(&id, &l.TransactionID, &l.PostedOn); err != nil {
			return nil, fmt.Errorf("warehouse: latest transactions: %w", err)
		}
		out[id] = l
	}
	return out, rows.Err()
}

// UserIDs lists the partner's users, as rows of users or as the owners of
// accounts, in id order.
func (s *Store) UserIDs(ctx context.Context, partnerID string) ([]string, error) {
	rows, err := s.db().QueryContext(ctx, `SELECT partner_customer_id FROM users WHERE partner_id = ?
		UNION SELECT partner_customer_id FROM accounts WHERE partner_id = ? ORDER BY 1`, partnerID, partnerID)
	if err != nil {
		return nil, fmt.Errorf("warehouse: users of %s: %w", partnerID, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("warehouse: users of %s: %w", partnerID, err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
