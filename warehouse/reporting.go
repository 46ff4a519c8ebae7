package warehouse

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/flatfiler/flatfiler/stages"
)

// The reporting rules README's "Reporting API, Definitions" documents:
// which accounts count in expenses, the balance an account shows, expenses
// by tag, and networth with its history. The API encodes what these return.

// expenseTypes are the account types included in expenses, budgets and
// cashflow by default: the spec's Cash group and credit cards.
var expenseTypes = map[string]bool{"checking": true, "savings": true, "money_market": true, "cards": true}

// IncludedInExpenses reports whether accounts of the type count in
// expenses, budgets and cashflow.
func IncludedInExpenses(accountType string) bool { return expenseTypes[accountType] }

// PrimaryBalance is the balance an account shows, from its latest snapshot
// (WithBalances): the first balance type of its class in the flat file
// spec, Current for deposit accounts and Outstanding for credit accounts.
func PrimaryBalance(a Account) (typ string, cents int64, ok bool) {
	if typ, ok = primaryType(a.Class); !ok {
		return "", 0, false
	}
	cents, ok = Snapshot{Balances: a.Balances}.Balance(typ)
	return typ, cents, ok
}

// primaryType is the balance type accounts of the class show, the first
// of its balance types.
func primaryType(class string) (string, bool) {
	if types := stages.BalanceTypes[class]; len(types) > 0 {
		return types[0], true
	}
	return "", false
}

// notExpenses are tags that move money without spending it.
var notExpenses = map[string]bool{"Transfer": true, "Payment": true, "Income": true}

const (
	// UntaggedExpense names debits without a tag.
	UntaggedExpense = "Untagged"
	// OtherExpense gathers the tags past the threshold.
	OtherExpense = "Other"
	// DefaultExpenseThreshold is the percent of expenses listed by tag.
	DefaultExpenseThreshold = 80
)

// Expense is what a tag's debits add up to, in positive cents.
type Expense struct {
	Tag   string
	Cents int64
}

// Expenses sums the debits of the accounts that count in expenses posted in
// [from, to] by tag, largest first, listing tags until they cover
// threshold percent of the total and gathering the rest as Other.
func (s *Store) Expenses(ctx context.Context, partnerID string, accounts []Account, from, to time.Time, threshold int) ([]Expense, error) {
	var included []Account
	for _, a := range accounts {
		if IncludedInExpenses(a.Type) {
			included = append(included, a)
		}
	}
	if len(included) == 0 {
		return []Expense{}, nil
	}
	txns, err := s.Debits(ctx, partnerID, included, from, to)
	if err != nil {
		return nil, err
	}
	return applyThreshold(expensesByTag(txns), threshold), nil
}

// expensesByTag sums debits per tag as positive cents, largest first, then
// by name: a tag's part of a split counts under that tag; Transfer,
// Payment and Income are left out; untagged debits count as Untagged.
func expensesByTag(txns []Transaction) []Expense {
	sums := map[string]int64{}
	for _, t := range txns {
		if t.Cents >= 0 {
			continue
		}
		tags := t.Tags()
		if len(tags) == 0 {
			sums[UntaggedExpense] += -t.Cents
		}
		for _, p := range tags {
			if !notExpenses[p.Name] {
				sums[p.Name] += p.Cents
			}
		}
	}
	out := make([]Expense, 0, len(sums))
	for tag, c := range sums {
		if c > 0 {
			out = append(out, Expense{tag, c})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Cents != out[j].Cents {
			return out[i].Cents > out[j].Cents
		}
		return out[i].Tag < out[j].Tag
	})
	return out
}

// applyThreshold lists tags, largest first, until they cover threshold
// percent of the total; the rest become one Other.
func applyThreshold(sorted []Expense, threshold int) []Expense {
	var total int64
	for _, e := range sorted {
		total += e.Cents
	}
	out := []Expense{}
	var covered, rest int64
	for _, e := range sorted {
		// covered/total < threshold/100, in integers.
		if covered*100 < int64(threshold)*total {
			out = append(out, e)
			covered += e.Cents
		} else {
			rest += e.Cents
		}
	}
	if rest > 0 {
		out = append(out, Expense{OtherExpense, rest})
	}
	return out
}

// Networth is a user's assets and debts now, and month by month.
type Networth struct {
	// Items are the accounts with a balance that counts (Account set, in
	// the accounts' order), then the manual accounts (Manual set).
	Items         []NetworthItem
	Assets, Debts int64
	// Change is the networth now less at the end of the month before the
	// latest snapshot's; zero with fewer than two months.
	Change  int64
	History []NetworthMonth
}

// NetworthItem is one account's part in networth.
type NetworthItem struct {
	Account *Account
	Manual  *NetworthAccount
	Cents   int64
	Debt    bool
}

// NetworthMonth is one month's totals.
type NetworthMonth struct {
	Year           int
	Month          time.Month
	Assets, Debts  int64
	SinceLastMonth int64 // this month's networth less the month before's
}

// networthValue is what a snapshot adds to networth: the Current balance of
// a deposit account as an asset, the Outstanding balance of a credit
// account as a debt.
func networthValue(class string, snap Snapshot) (cents int64, debt, ok bool) {
	typ, ok := primaryType(class)
	if !ok {
		return 0, false, false
	}
	c, ok := snap.Balance(typ)
	return c, class == "credit", ok
}

// Networth computes the user's networth from the accounts' snapshots and
// the user's manual networth accounts.
func (s *Store) Networth(ctx context.Context, partnerID, user string, accounts []Account) (Networth, error) {
	snaps, err := s.Snapshots(ctx, accounts)
	if err != nil {
		return Networth{}, err
	}
	manual, err := s.NetworthAccounts(ctx, partnerID, user)
	if err != nil {
		return Networth{}, err
	}
	var n Networth
	add := func(item NetworthItem) {
		n.Items = append(n.Items, item)
		if item.Debt {
			n.Debts += item.Cents
		} else {
			n.Assets += item.Cents
		}
	}
	for i := range accounts {
		h := snaps[accounts[i].ID]
		if len(h) == 0 {
			continue
		}
		if c, debt, ok := networthValue(accounts[i].Class, h[len(h)-1]); ok {
			add(NetworthItem{Account: &accounts[i], Cents: c, Debt: debt})
		}
	}
	for i := range manual {
		add(NetworthItem{Manual: &manual[i], Cents: manual[i].Cents, Debt: manual[i].Type == "debt"})
	}
	n.History = networthHistory(accounts, snaps, manual)
	if k := len(n.History); k >= 2 {
		n.Change = n.Assets - n.Debts - (n.History[k-2].Assets - n.History[k-2].Debts)
	}
	return n, nil
}

// networthHistory has one entry per month from the month of the user's
// first snapshot to that of the last: each account counts with its last
// snapshot on or before the month's end (so a month a file skipped keeps
// the balance known), and manual accounts count from the month they were
// created, at their balance now.
func networthHistory(accts []Account, snaps map[string][]Snapshot, manual []NetworthAccount) []NetworthMonth {
	var first, last time.Time
	for _, h := range snaps {
		for _, sn := range h {
			if first.IsZero() || sn.AsOf.Before(first) {
				first = sn.AsOf
			}
			if sn.AsOf.After(last) {
				last = sn.AsOf
			}
		}
	}
	if first.IsZero() {
		return nil
	}
	var out []NetworthMonth
	for m := time.Date(first.Year(), first.Month(), 1, 0, 0, 0, 0, time.UTC); !m.After(last); m = m.AddDate(0, 1, 0) {
		end := m.AddDate(0, 1, 0) // exclusive
		mt := NetworthMonth{Year: m.Year(), Month: m.Month()}
		for _, a := range accts {
			h := snaps[a.ID]
			i := sort.Search(len(h), func(i int) bool { return !h[i].AsOf.Before(end) }) - 1
			if i < 0 {
				continue
			}
			if c, debt, ok := networthValue(a.Class, h[i]); ok {
				if debt {
					mt.Debts += c
				} else {
					mt.Assets += c
				}
			}
		}
		for _, n := range manual {
			if n.CreatedAt.Before(end) {
				if n.Type == "debt" {
					mt.Debts += n.Cents
				} else {
					mt.Assets += n.Cents
				}
			}
		}
		if k := len(out); k > 0 {
			mt.SinceLastMonth = (mt.Assets - mt.Debts) - (out[k-1].Assets - out[k-1].Debts)
		}
		out = append(out, mt)
	}
	return out
}

// LastDelivered is, per partner, when its last file, push batch or pull
// harvest was applied (the API's own writes left out): what an operator
// watches for a partner gone quiet.
func (s *Store) LastDelivered(ctx context.Context) (map[string]time.Time, error) {
	rows, err := s.db().QueryContext(ctx, `SELECT partner_id, max(finished_at) FROM ingests
		WHERE status IN ('success', 'partial-success') AND file NOT LIKE 'api:%' GROUP BY partner_id`)
	if err != nil {
		return nil, fmt.Errorf("warehouse: last delivered: %w", s.storageError(err))
	}
	defer rows.Close()
	last := map[string]time.Time{}
	for rows.Next() {
		var partner string
		var at time.Time
		if err := rows.Scan(&partner, &at); err != nil {
			return nil, err
		}
		last[partner] = at
	}
	return last, rows.Err()
}
