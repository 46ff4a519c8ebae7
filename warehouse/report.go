package warehouse

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The reporting API reads one user at a time. Each read takes the user's
// accounts from the account directory, then reads transactions and
// balances by the accounts' keys as literal integers: DuckDB prunes those
// scans with zone maps and compares one integer column, where account_id
// strings cost three times as much and a join against accounts would scan
// every transaction of the partner. Amounts come out as integer cents.

// ownerHash is the SQL for an account's owner_hash from SQL expressions
// for its partner and customer id.
func ownerHash(partner, customer string) string {
	return "md5_number_upper(" + partner + " || ':' || " + customer + ")"
}

// errNoDirectory: per-user reads start from the account directory.
var errNoDirectory = errors.New("warehouse: per-user reads need a Store opened with Options.AccountDirectory")

// ErrNotFound is returned for a user, account, transaction or networth
// account that does not exist within the partner.
var ErrNotFound = errors.New("not found")

// User is a row of users, or a user known only from the accounts a file
// gave it.
type User struct {
	ID        string // partner_customer_id
	FirstName string
	LastName  string
	Email     string
	ZipCode   string
	UpdatedAt time.Time
	// Profile holds what only the API gives a user; its User is empty
	// where it gave none.
	Profile Profile
}

// Account is one of a user's accounts with its latest balance snapshot.
type Account struct {
	ID        string // the partner's account_id
	Key       int64  // account_key
	Owner     string
	Number    string
	FIName    string
	Nickname  string
	Type      string // lower case, from the spec's closed list
	Class     string // deposit or credit
	State     string
	UpdatedAt time.Time
	AsOf      time.Time // the latest snapshot's business date; zero: no balances
	Balances  []Balance // that snapshot
	// UserName and DisplayType are the user's (PUT accounts/:id); empty:
	// none given.
	UserName, DisplayType string
}

// Balance is one balance of a snapshot.
type Balance struct {
	Type     string
	Cents    int64
	Currency string
}

// Transaction is a stored transaction with what enrichment and the user
// made of it.
type Transaction struct {
	AccountID    string
	ID           string // the partner's transaction_id
	Type         string // debit or credit
	PostedAt     time.Time
	PostedOn     time.Time
	Cents        int64 // signed: debits negative
	Memo         string
	OriginalName string
	CheckNumber  string
	UpdatedAt    time.Time
	Nickname     string
	Tag          string // the enrichment's; empty: untagged
	MerchantKey  string
	// UserTags are the user's tags; nil: none set, use Tag.
	UserTags []TagPart

	enrichmentID int64 // 0: none; read by decorate
}

// TagPart is a tag and the part of a transaction's absolute amount it
// carries.
type TagPart struct {
	Name  string
	Cents int64
}

// Tags are the transaction's tags with their amounts: the user's if set,
// else the enrichment's one tag carrying the whole absolute amount.
func (t *Transaction) Tags() []TagPart {
	if t.UserTags != nil {
		return t.UserTags
	}
	if t.Tag == "" {
		return []TagPart{}
	}
	return []TagPart{{Name: t.Tag, Cents: abs(t.Cents)}}
}

func abs(c int64) int64 {
	if c < 0 {
		return -c
	}
	return c
}

// TransactionFilter narrows a user's transactions (the spec's search).
type TransactionFilter struct {
	Query    string // case-insensitive, in memo, original name or nickname
	Untagged bool
	Tags     []string // any of
	From, To time.Time
	// IncludeHidden lists the transactions a push batch hid too (a batch's
	// content does; the user's lists do not).
	IncludeHidden bool
}

// Page is one page of a listing.
type Page struct {
	Number, Size int // Number from 1
}

func (p Page) offset() int { return (p.Number - 1) * p.Size }

// UserExists reports whether the partner has the user, as a users row or as
// the owner of accounts.
func (s *Store) UserExists(ctx context.Context, partnerID, user string) (bool, error) {
	if s.directory == nil {
		return false, errNoDirectory
	}
	if s.directory.has(partnerID, user) {
		return true, nil
	}
	var ok bool
	err := s.db().QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE partner_id = ? AND partner_customer_id = ?)`,
		partnerID, user).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("warehouse: user %s: %w", user, err)
	}
	return ok, nil
}

const userColumns = `partner_customer_id, coalesce(first_name, ''), coalesce(last_name, ''), coalesce(email, ''),
	coalesce(zip_code, ''), updated_at`

// User returns one user; a user known only from accounts has an ID alone.
func (s *Store) User(ctx context.Context, partnerID, user string) (User, error) {
	rows, err := s.db().QueryContext(ctx, `SELECT partner_id, `+userColumns+` FROM users WHERE partner_id = ? AND partner_customer_id = ?`, partnerID, user)
	if err != nil {
		return User{}, fmt.Errorf("warehouse: user %s: %w", user, err)
	}
	defer rows.Close()
	found := false
	var u User
	for rows.Next() {
		var p string
		if err := rows.Scan(&p, &u.ID, &u.FirstName, &u.LastName, &u.Email, &u.ZipCode, &u.UpdatedAt); err != nil {
			return User{}, fmt.Errorf("warehouse: user %s: %w", user, err)
		}
		if p == partnerID {
			found = true
			break
		}
	}
	if err := rows.Err(); err != nil {
		return User{}, fmt.Errorf("warehouse: user %s: %w", user, err)
	}
	if !found {
		ok, err := s.UserExists(ctx, partnerID, user)
		if err != nil {
			return User{}, err
		}
		if !ok {
			return User{}, fmt.Errorf("user %s: %w", user, ErrNotFound)
		}
		return User{ID: user}, nil
	}
	one := []User{u}
	if err := s.withProfiles(ctx, partnerID, one); err != nil {
		return User{}, err
	}
	return one[0], nil
}

// Users returns a page of the partner's users in id order, and how many
// there are.
func (s *Store) Users(ctx context.Context, partnerID string, page Page) ([]User, int, error) {
	rows, err := s.db().QueryContext(ctx, `SELECT `+userColumns+`, count(*) OVER () FROM users WHERE partner_id = ?
		ORDER BY partner_customer_id LIMIT ? OFFSET ?`, partnerID, page.Size, page.offset())
	if err != nil {
		return nil, 0, fmt.Errorf("warehouse: users: %w", err)
	}
	defer rows.Close()
	var out []User
	total := 0
	for rows.Next() {
		var u User
		if err := rows.Scan(&u.ID, &u.FirstName, &u.LastName, &u.Email, &u.ZipCode, &u.UpdatedAt, &total); err != nil {
			return nil, 0, fmt.Errorf("warehouse: users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("warehouse: users: %w", err)
	}
	if len(out) == 0 && page.Number > 1 {
		// Past the last page the window count is lost; count apart.
		if err := s.db().QueryRowContext(ctx, "SELECT count(*) FROM users WHERE partner_id = ?", partnerID).Scan(&total); err != nil {
			return nil, 0, fmt.Errorf("warehouse: users: %w", err)
		}
	}
	if err := s.withProfiles(ctx, partnerID, out); err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

// Accounts returns the user's accounts, ordered by account id, without
// balances (see WithBalances). The Store must keep the account directory.
func (s *Store) Accounts(ctx context.Context, partnerID, user string) ([]Account, error) {
	if s.directory == nil {
		return nil, errNoDirectory
	}
	accts := s.directory.accounts(partnerID, user)
	if err := s.withAccountEdits(ctx, partnerID, accts); err != nil {
		return nil, err
	}
	return accts, nil
}

// WithBalances sets each account's latest balance snapshot.
func (s *Store) WithBalances(ctx context.Context, accts []Account) error {
	snaps, err := s.Snapshots(ctx, accts)
	if err != nil {
		return err
	}
	for i := range accts {
		if h := snaps[accts[i].ID]; len(h) > 0 {
			last := h[len(h)-1]
			accts[i].AsOf, accts[i].Balances = last.AsOf, last.Balances
		}
	}
	return nil
}

// Snapshot is an account's balances on one business date.
type Snapshot struct {
	AsOf     time.Time
	Balances []Balance
}

// Balance returns the snapshot's balance of type typ.
func (s Snapshot) Balance(typ string) (int64, bool) {
	for _, b := range s.Balances {
		if b.Type == typ {
			return b.Cents, true
		}
	}
	return 0, false
}

// Snapshots returns every balance snapshot of the accounts (a user's, from
// Accounts) by account id, oldest first.
func (s *Store) Snapshots(ctx context.Context, accounts []Account) (map[string][]Snapshot, error) {
	out := map[string][]Snapshot{}
	if len(accounts) == 0 {
		return out, nil
	}
	q := byAccountKey(accounts, func(keys string) string {
		return `SELECT account_id, as_of, balance_type, CAST(amount * 100 AS BIGINT) AS cents, currency_code
		FROM balances WHERE account_key IN (` + keys + `)`
	})
	rows, err := s.db().QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("warehouse: balances: %w", err)
	}
	defer rows.Close()
	type row struct {
		account string
		asOf    time.Time
		balance Balance
	}
	var found []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.account, &r.asOf, &r.balance.Type, &r.balance.Cents, &r.balance.Currency); err != nil {
			return nil, fmt.Errorf("warehouse: balances: %w", err)
		}
		found = append(found, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("warehouse: balances: %w", err)
	}
	// Sorted here: ORDER BY took 0.25 ms of the query's 0.8.
	slices.SortFunc(found, func(a, b row) int {
		if c := strings.Compare(a.account, b.account); c != 0 {
			return c
		}
		if c := a.asOf.Compare(b.asOf); c != 0 {
			return c
		}
		return strings.Compare(a.balance.Type, b.balance.Type)
	})
	for _, r := range found {
		h := out[r.account]
		if n := len(h); n == 0 || !h[n-1].AsOf.Equal(r.asOf) {
			h = append(h, Snapshot{AsOf: r.asOf})
		}
		h[len(h)-1].Balances = append(h[len(h)-1].Balances, r.balance)
		out[r.account] = h
	}
	return out, nil
}

// keyRunGap is how far apart two keys may lie and still be read in one
// scan: DuckDB prunes an IN list's scan by the list's lowest and highest
// value, so keys far apart (an account added years after the user's first)
// get scans of their own.
const keyRunGap = 256

// byAccountKey unions scan(keys) over runs of the accounts' keys, keys being
// a literal list of integers.
func byAccountKey(accounts []Account, scan func(keys string) string) string {
	keys := make([]int64, 0, len(accounts))
	for _, a := range accounts {
		keys = append(keys, a.Key)
	}
	slices.Sort(keys)
	var scans []string
	var run []string
	for i, k := range keys {
		run = append(run, strconv.FormatInt(k, 10))
		if i == len(keys)-1 || keys[i+1]-k > keyRunGap {
			scans = append(scans, scan(strings.Join(run, ", ")))
			run = run[:0]
		}
	}
	return strings.Join(scans, "\nUNION ALL\n")
}

// inList makes "?, ?, ?" for values.
func inList(values []string) (string, []any) {
	args := make([]any, len(values))
	for i, v := range values {
		args[i] = v
	}
	return strings.TrimSuffix(strings.Repeat("?, ", len(values)), ", "), args
}

// transactionColumns are what the API shows of a transaction, in the order
// Transactions scans them.
const transactionColumns = `account_id, transaction_id, transaction_type, posted_at, posted_on,
		CAST(amount * 100 AS BIGINT) AS cents, memo, original_name, coalesce(check_number, '') AS check_number, updated_at,
		coalesce(enrichment_id, 0) AS enrichment_id`

// Transactions returns a page of the transactions on accounts (the user's,
// from Accounts) that pass the filter, newest first, and how many pass. A
// zero page returns them all.
//
// DuckDB reads only the transactions; their enrichments and the user's
// edits are joined here, in Go: joined in SQL they took half of each
// request's time. Without search terms DuckDB pages; with them the user's
// transactions in the date range are filtered here.
func (s *Store) Transactions(ctx context.Context, partnerID string, accounts []Account, f TransactionFilter, page Page) ([]Transaction, int, error) {
	if len(accounts) == 0 {
		return nil, 0, nil
	}
	// Hidden transactions (a push batch's hide) are not the user's to see.
	var where []string
	if !f.IncludeHidden {
		where = append(where, "hidden IS NOT TRUE")
	}
	var dates []any
	if !f.From.IsZero() {
		where, dates = append(where, "posted_on >= ?"), append(dates, f.From.Format(time.DateOnly))
	}
	if !f.To.IsZero() {
		where, dates = append(where, "posted_on <= ?"), append(dates, f.To.Format(time.DateOnly))
	}
	var args []any
	scans := byAccountKey(accounts, func(keys string) string {
		args = append(args, dates...)
		return `SELECT ` + transactionColumns + ` FROM transactions WHERE ` +
			strings.Join(append([]string{"account_key IN (" + keys + ")"}, where...), " AND ")
	})
	searching := f.Searching()
	limit := ""
	if page.Size > 0 && !searching {
		limit = fmt.Sprintf("LIMIT %d OFFSET %d", page.Size, page.offset())
	}
	q := `SELECT *, count(*) OVER () FROM (` + scans + `) ORDER BY posted_at DESC, account_id, transaction_id ` + limit
	rows, err := s.db().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("warehouse: transactions: %w", err)
	}
	defer rows.Close()
	var out []Transaction
	total := 0
	for rows.Next() {
		var t Transaction
		if err := rows.Scan(&t.AccountID, &t.ID, &t.Type, &t.PostedAt, &t.PostedOn, &t.Cents, &t.Memo, &t.OriginalName,
			&t.CheckNumber, &t.UpdatedAt, &t.enrichmentID, &total); err != nil {
			return nil, 0, fmt.Errorf("warehouse: transactions: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("warehouse: transactions: %w", err)
	}
	if err := s.decorate(ctx, partnerID, accounts, out); err != nil {
		return nil, 0, err
	}
	if searching {
		out = slices.DeleteFunc(out, func(t Transaction) bool { return !f.matches(&t) })
		total = len(out)
		if page.Size > 0 {
			out = out[min(page.offset(), len(out)):min(page.offset()+page.Size, len(out))]
		}
	} else if len(out) == 0 && page.Number > 1 {
		// Past the last page: count without the page.
		_, total, err = s.Transactions(ctx, partnerID, accounts, f, Page{Number: 1, Size: 1})
		if err != nil {
			return nil, 0, err
		}
	}
	return out, total, nil
}

// Enriched returns what enrichment and the user's edits made of every
// transaction on accounts, hidden ones too, in no order: the columns a push
// batch's content needs (ids, amount, original name, nickname, tags), without
// the sort, count and columns of a page, which took most of a 100 MB
// batch's content time.
func (s *Store) Enriched(ctx context.Context, partnerID string, accounts []Account) ([]Transaction, error) {
	if len(accounts) == 0 {
		return nil, nil
	}
	q := byAccountKey(accounts, func(keys string) string {
		return `SELECT account_id, transaction_id, CAST(amount * 100 AS BIGINT), original_name, coalesce(enrichment_id, 0)
FROM transactions WHERE account_key IN (` + keys + `)`
	})
	rows, err := s.db().QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("warehouse: enriched transactions: %w", err)
	}
	defer rows.Close()
	var out []Transaction
	for rows.Next() {
		var t Transaction
		if err := rows.Scan(&t.AccountID, &t.ID, &t.Cents, &t.OriginalName, &t.enrichmentID); err != nil {
			return nil, fmt.Errorf("warehouse: enriched transactions: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("warehouse: enriched transactions: %w", err)
	}
	return out, s.decorate(ctx, partnerID, accounts, out)
}

// Searching reports whether the filter has search terms (which are
// applied past the warehouse's read, in Go).
func (f *TransactionFilter) Searching() bool { return f.Query != "" || f.Untagged || len(f.Tags) > 0 }

// matches applies the filter's search terms to a decorated transaction.
func (f *TransactionFilter) matches(t *Transaction) bool {
	if f.Query != "" {
		q := strings.ToLower(f.Query)
		if !strings.Contains(strings.ToLower(t.Memo), q) && !strings.Contains(strings.ToLower(t.OriginalName), q) &&
			!strings.Contains(strings.ToLower(t.Nickname), q) {
			return false
		}
	}
	tags := t.Tags()
	if f.Untagged && len(tags) > 0 {
		return false
	}
	if len(f.Tags) > 0 && !slices.ContainsFunc(tags, func(p TagPart) bool { return slices.Contains(f.Tags, p.Name) }) {
		return false
	}
	return true
}

// Debits returns the debits on accounts posted in [from, to], with what an
// expense report needs: account, id, amount and tags.
func (s *Store) Debits(ctx context.Context, partnerID string, accounts []Account, from, to time.Time) ([]Transaction, error) {
	if len(accounts) == 0 {
		return nil, nil
	}
	// The dates and the sign are applied past a materialized scan: pushed
	// into the scan, DuckDB evaluated them over whole row groups before the
	// key, three times slower.
	scans := byAccountKey(accounts, func(keys string) string {
		return `SELECT account_id, transaction_id, posted_on, CAST(amount * 100 AS BIGINT) AS cents, coalesce(enrichment_id, 0) AS enrichment_id, hidden
		FROM transactions WHERE account_key IN (` + keys + `)`
	})
	rows, err := s.db().QueryContext(ctx, `WITH t AS MATERIALIZED (`+scans+`)
	SELECT account_id, transaction_id, cents, enrichment_id FROM t WHERE posted_on BETWEEN ? AND ? AND cents < 0 AND hidden IS NOT TRUE`,
		from.Format(time.DateOnly), to.Format(time.DateOnly))
	if err != nil {
		return nil, fmt.Errorf("warehouse: debits: %w", err)
	}
	defer rows.Close()
	var out []Transaction
	for rows.Next() {
		var t Transaction
		if err := rows.Scan(&t.AccountID, &t.ID, &t.Cents, &t.enrichmentID); err != nil {
			return nil, fmt.Errorf("warehouse: debits: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("warehouse: debits: %w", err)
	}
	return out, s.decorate(ctx, partnerID, accounts, out)
}

// decorate sets each transaction's enrichment and the user's edits.
func (s *Store) decorate(ctx context.Context, partnerID string, accounts []Account, txns []Transaction) error {
	if len(txns) == 0 {
		return nil
	}
	ids := make([]int64, len(txns))
	for i, t := range txns {
		ids[i] = t.enrichmentID
	}
	found, err := s.enrichments.get(ctx, s.db(), ids)
	if err != nil {
		return err
	}
	for i := range txns {
		e := found[txns[i].enrichmentID]
		txns[i].Nickname, txns[i].Tag, txns[i].MerchantKey = e.nickname, e.tag, e.merchantKey
	}
	edits, err := s.edits(ctx, partnerID, accounts)
	if err != nil || len(edits) == 0 {
		return err
	}
	for i := range txns {
		if x, ok := edits[[2]string{txns[i].AccountID, txns[i].ID}]; ok {
			if x.nickname != "" {
				txns[i].Nickname = x.nickname
			}
			txns[i].UserTags = x.tags
		}
	}
	return nil
}

type edit struct {
	nickname string
	tags     []TagPart // nil: not edited
}

// edits returns the user's edits on accounts by (account id, transaction id).
func (s *Store) edits(ctx context.Context, partnerID string, accounts []Account) (map[[2]string]edit, error) {
	if !s.edited.anyAccount(partnerID, accounts) {
		return nil, nil
	}
	ids := make([]string, len(accounts))
	for i, a := range accounts {
		ids[i] = a.ID
	}
	in, args := inList(ids)
	rows, err := s.db().QueryContext(ctx, `SELECT account_id, transaction_id, coalesce(nickname, ''), `+tagsJSON("tags")+`
		FROM transaction_edits WHERE partner_id = ? AND account_id IN (`+in+`)`, append([]any{partnerID}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("warehouse: edits: %w", err)
	}
	defer rows.Close()
	out := map[[2]string]edit{}
	for rows.Next() {
		var account, id string
		var x edit
		var tags sql.NullString
		if err := rows.Scan(&account, &id, &x.nickname, &tags); err != nil {
			return nil, fmt.Errorf("warehouse: edits: %w", err)
		}
		if tags.Valid {
			if x.tags, err = decodeTagParts(tags.String); err != nil {
				return nil, fmt.Errorf("warehouse: edits: %w", err)
			}
		}
		out[[2]string{account, id}] = x
	}
	return out, rows.Err()
}

type enrichment struct{ nickname, tag, merchantKey string }

// enrichmentCache keeps enrichments by id for the API. A committed row
// never changes (loads and rules only add ids, and an id rolled back was
// never seen), so a cached row is never stale. It holds at most
// maxCachedEnrichments rows, starting over when full, so memory stays
// bounded however many decisions the warehouse gathers.
type enrichmentCache struct {
	mu   sync.RWMutex
	byID map[int64]enrichment
}

const maxCachedEnrichments = 1 << 16

// preload reads the whole table if it fits, so the API's first requests
// do not each ask for the ids they miss.
func (c *enrichmentCache) preload(ctx context.Context, db *sql.DB) error {
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM enrichments").Scan(&n); err != nil {
		return fmt.Errorf("warehouse: enrichments: %w", err)
	}
	if n == 0 || n > maxCachedEnrichments {
		return nil
	}
	byID := make(map[int64]enrichment, n)
	err := readEnrichments(ctx, db, "", func(id int64, e enrichment) { byID[id] = e })
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.byID = byID
	c.mu.Unlock()
	return nil
}

// readEnrichments calls each for the enrichments that pass where (all if
// empty).
func readEnrichments(ctx context.Context, db *sql.DB, where string, each func(int64, enrichment)) error {
	q := `SELECT enrichment_id, coalesce(nickname, ''), coalesce(tag, ''), coalesce(merchant_key, '') FROM enrichments`
	if where != "" {
		q += " WHERE " + where
	}
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("warehouse: enrichments: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var e enrichment
		if err := rows.Scan(&id, &e.nickname, &e.tag, &e.merchantKey); err != nil {
			return fmt.Errorf("warehouse: enrichments: %w", err)
		}
		each(id, e)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("warehouse: enrichments: %w", err)
	}
	return nil
}

func (c *enrichmentCache) get(ctx context.Context, db *sql.DB, ids []int64) (map[int64]enrichment, error) {
	out := make(map[int64]enrichment, len(ids))
	var missing []string
	c.mu.RLock()
	for _, id := range ids {
		if e, ok := c.byID[id]; ok {
			out[id] = e
		} else if _, asked := out[id]; id != 0 && !asked {
			out[id] = enrichment{}
			missing = append(missing, strconv.FormatInt(id, 10))
		}
	}
	c.mu.RUnlock()
	if len(missing) == 0 {
		return out, nil
	}
	found := map[int64]enrichment{}
	err := readEnrichments(ctx, db, "enrichment_id IN ("+strings.Join(missing, ", ")+")", func(id int64, e enrichment) { found[id] = e })
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil || len(c.byID)+len(found) > maxCachedEnrichments {
		c.byID = make(map[int64]enrichment, len(found))
	}
	for id, e := range found {
		out[id], c.byID[id] = e, e
	}
	return out, nil
}
