package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/flatfiler/flatfiler/warehouse"
)

// Expenses and networth: the definitions README's "Reporting API" section
// documents.

// notExpenses are tags that move money without spending it.
var notExpenses = map[string]bool{"Transfer": true, "Payment": true, "Income": true}

const (
	untaggedExpense  = "Untagged"
	otherExpense     = "Other"
	defaultThreshold = 80
)

type expenseJSON struct {
	Tag    string `json:"tag"`
	Amount string `json:"amount"`
}

type expense struct {
	tag   string
	cents int64
}

// expensesByTag sums debits per tag as positive cents, largest first, then
// by name: a tag's part of a split counts under that tag; Transfer,
// Payment and Income are left out; untagged debits count as Untagged.
func expensesByTag(txns []warehouse.Transaction) []expense {
	sums := map[string]int64{}
	for _, t := range txns {
		if t.Cents >= 0 {
			continue
		}
		tags := t.Tags()
		if len(tags) == 0 {
			sums[untaggedExpense] += -t.Cents
		}
		for _, p := range tags {
			if !notExpenses[p.Name] {
				sums[p.Name] += p.Cents
			}
		}
	}
	out := make([]expense, 0, len(sums))
	for tag, c := range sums {
		if c > 0 {
			out = append(out, expense{tag, c})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].cents != out[j].cents {
			return out[i].cents > out[j].cents
		}
		return out[i].tag < out[j].tag
	})
	return out
}

// applyThreshold lists tags, largest first, until they cover threshold
// percent of the total; the rest become one "Other".
func applyThreshold(sorted []expense, threshold int) []expense {
	var total int64
	for _, e := range sorted {
		total += e.cents
	}
	var out []expense
	var covered, rest int64
	for _, e := range sorted {
		// covered/total < threshold/100, in integers.
		if covered*100 < int64(threshold)*total {
			out = append(out, e)
			covered += e.cents
		} else {
			rest += e.cents
		}
	}
	if rest > 0 {
		out = append(out, expense{otherExpense, rest})
	}
	return out
}

func today(now time.Time) time.Time {
	now = now.UTC()
	return time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
}

// expensePeriod is the date range of a helper endpoint, or of begin_on and
// end_on (defaults: thirty days ago to today).
func expensePeriod(period string, now time.Time, from, to time.Time) (time.Time, time.Time) {
	d := today(now)
	first := time.Date(d.Year(), d.Month(), 1, 0, 0, 0, 0, time.UTC)
	switch period {
	case "this_month":
		return first, d
	case "last_month":
		return first.AddDate(0, -1, 0), first.AddDate(0, 0, -1)
	case "last_thirty_days":
		return d.AddDate(0, 0, -30), d
	}
	if from.IsZero() {
		from = d.AddDate(0, 0, -30)
	}
	if to.IsZero() {
		to = d
	}
	return from, to
}

// expenseParams reads an expense report's dates and threshold for the
// period (a helper's name, or "" for begin_on and end_on), or the problems
// with them.
func expenseParams(q url.Values, period string, now time.Time) (from, to time.Time, threshold int, problems []string) {
	from, to = dateParam(q, "begin_on", &problems), dateParam(q, "end_on", &problems)
	threshold = defaultThreshold
	if v := q.Get("threshold"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100 {
			problems = append(problems, fmt.Sprintf("threshold: %q is not a percentage from 0 to 100", v))
		}
		threshold = n
	}
	from, to = expensePeriod(period, now, from, to)
	if to.Before(from) {
		problems = append(problems, "end_on: before begin_on")
	}
	return from, to, threshold, problems
}

func (s *Server) expenses(period string) userHandler {
	return func(w http.ResponseWriter, r *http.Request, u userRequest) {
		from, to, threshold, problems := expenseParams(r.URL.Query(), period, s.now())
		if problems != nil {
			invalid(w, "invalid parameters", problems)
			return
		}
		var included []warehouse.Account
		for _, a := range u.accounts {
			if expenseTypes[a.Type] {
				included = append(included, a)
			}
		}
		var txns []warehouse.Transaction
		if len(included) > 0 {
			var err error
			txns, err = s.Store.Debits(r.Context(), u.partnerID(), included, from, to)
			if err != nil {
				s.internalError(w, r, err)
				return
			}
		}
		out := []expenseJSON{}
		for _, e := range applyThreshold(expensesByTag(txns), threshold) {
			out = append(out, expenseJSON{Tag: e.tag, Amount: cents2(e.cents)})
		}
		writeJSON(w, http.StatusOK, map[string][]expenseJSON{"expenses": out})
	}
}

// Networth.

type networthItemJSON struct {
	ID         int64  `json:"id"`
	Balance    string `json:"balance"`
	Name       string `json:"name"`
	Additional bool   `json:"additional_networth_account"`
}

type networthHistoryJSON struct {
	Total          string `json:"total"`
	TotalAsset     string `json:"total_asset"`
	TotalDebt      string `json:"total_debt"`
	Month          int    `json:"month"`
	Year           int    `json:"year"`
	SinceLastMonth string `json:"since_last_month"`
}

type networthJSON struct {
	Meta struct {
		NetWorth       string `json:"net_worth"`
		NetWorthChange string `json:"net_worth_change"`
		TotalAssets    string `json:"total_assets"`
		TotalDebts     string `json:"total_debts"`
	} `json:"meta"`
	Assets    []networthItemJSON    `json:"assets"`
	Debts     []networthItemJSON    `json:"debts"`
	Histories []networthHistoryJSON `json:"networth_histories"`
}

// networthValue is what a snapshot adds to networth: the Current balance of
// a deposit account as an asset, the Outstanding balance of a credit
// account as a debt.
func networthValue(class string, snap warehouse.Snapshot) (cents int64, debt, ok bool) {
	if class == "credit" {
		c, ok := snap.Balance("Outstanding")
		return c, true, ok
	}
	c, ok := snap.Balance("Current")
	return c, false, ok
}

// monthTotals are one month's assets and debts.
type monthTotals struct {
	year   int
	month  time.Month
	assets int64
	debts  int64
}

// networthHistory has one entry per month from the month of the user's
// first snapshot to that of the last: each account counts with its last
// snapshot on or before the month's end (so a month a file skipped keeps
// the balance known), and manual accounts count from the month they were
// created, at their balance now.
func networthHistory(accts []warehouse.Account, snaps map[string][]warehouse.Snapshot, manual []warehouse.NetworthAccount) []monthTotals {
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
	var out []monthTotals
	for m := time.Date(first.Year(), first.Month(), 1, 0, 0, 0, 0, time.UTC); !m.After(last); m = m.AddDate(0, 1, 0) {
		end := m.AddDate(0, 1, 0) // exclusive
		mt := monthTotals{year: m.Year(), month: m.Month()}
		for _, a := range accts {
			h := snaps[a.ID]
			i := sort.Search(len(h), func(i int) bool { return !h[i].AsOf.Before(end) }) - 1
			if i < 0 {
				continue
			}
			if c, debt, ok := networthValue(a.Class, h[i]); ok {
				if debt {
					mt.debts += c
				} else {
					mt.assets += c
				}
			}
		}
		for _, n := range manual {
			if n.CreatedAt.Before(end) {
				if n.Type == "debt" {
					mt.debts += n.Cents
				} else {
					mt.assets += n.Cents
				}
			}
		}
		out = append(out, mt)
	}
	return out
}

func (s *Server) networth(w http.ResponseWriter, r *http.Request, u userRequest) {
	ctx := r.Context()
	accts := u.accounts
	snaps, err := s.Store.Snapshots(ctx, accts)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	manual, err := s.Store.NetworthAccounts(ctx, u.partnerID(), u.user)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	out := networthJSON{Assets: []networthItemJSON{}, Debts: []networthItemJSON{}, Histories: []networthHistoryJSON{}}
	var assets, debts int64
	for _, a := range accts {
		h := snaps[a.ID]
		if len(h) == 0 {
			continue
		}
		c, debt, ok := networthValue(a.Class, h[len(h)-1])
		if !ok {
			continue
		}
		item := networthItemJSON{ID: warehouse.AccountNumber(u.partnerID(), a.ID), Balance: centsShort(c), Name: accountName(a)}
		if debt {
			out.Debts, debts = append(out.Debts, item), debts+c
		} else {
			out.Assets, assets = append(out.Assets, item), assets+c
		}
	}
	for _, n := range manual {
		item := networthItemJSON{ID: n.ID, Balance: centsShort(n.Cents), Name: n.Name, Additional: true}
		if n.Type == "debt" {
			out.Debts, debts = append(out.Debts, item), debts+n.Cents
		} else {
			out.Assets, assets = append(out.Assets, item), assets+n.Cents
		}
	}
	history := networthHistory(accts, snaps, manual)
	var change int64
	for i, m := range history {
		total := m.assets - m.debts
		var since int64
		if i > 0 {
			since = total - (history[i-1].assets - history[i-1].debts)
		}
		out.Histories = append(out.Histories, networthHistoryJSON{Total: centsShort(total), TotalAsset: centsShort(m.assets),
			TotalDebt: centsShort(m.debts), Month: int(m.month), Year: m.year, SinceLastMonth: centsShort(since)})
	}
	if n := len(history); n >= 2 {
		change = assets - debts - (history[n-2].assets - history[n-2].debts)
	}
	out.Meta.NetWorth, out.Meta.NetWorthChange = centsShort(assets-debts), centsShort(change)
	out.Meta.TotalAssets, out.Meta.TotalDebts = centsShort(assets), centsShort(debts)
	writeJSON(w, http.StatusOK, out)
}

// networthAccountBody is the spec's POST and PUT body.
type networthAccountBody struct {
	NetworthAccount *struct {
		AccountType string          `json:"account_type"`
		Balance     json.RawMessage `json:"balance"` // a number; a numeric string is taken too
		Name        string          `json:"name"`
	} `json:"networth_account"`
}

func (s *Server) readNetworthAccount(w http.ResponseWriter, r *http.Request, u userRequest) (warehouse.NetworthAccount, bool) {
	var body networthAccountBody
	if !readBody(w, r, 1<<16, "Error in networth account", &body) {
		return warehouse.NetworthAccount{}, false
	}
	var problems []string
	a := warehouse.NetworthAccount{Partner: u.partnerID(), User: u.user}
	if n := body.NetworthAccount; n == nil {
		problems = append(problems, "networth_account: required")
	} else {
		a.Type, a.Name = n.AccountType, strings.TrimSpace(n.Name)
		if a.Type != "asset" && a.Type != "debt" {
			problems = append(problems, fmt.Sprintf("networth_account.account_type: %q is not debt or asset", n.AccountType))
		}
		var ok bool
		if a.Cents, ok = parseCents(json.Number(strings.Trim(string(n.Balance), `"`))); !ok {
			problems = append(problems, fmt.Sprintf("networth_account.balance: %s is not an amount with at most two decimals", n.Balance))
		}
		if a.Name == "" || len([]rune(a.Name)) > 255 {
			problems = append(problems, "networth_account.name: required, at most 255 characters")
		}
	}
	if problems != nil {
		invalid(w, "Error in networth account", problems)
		return a, false
	}
	return a, true
}

func (s *Server) createNetworthAccount(w http.ResponseWriter, r *http.Request, u userRequest) {
	a, ok := s.readNetworthAccount(w, r, u)
	if !ok {
		return
	}
	a.CreatedAt = s.now()
	a, err := s.Store.AddNetworthAccount(r.Context(), a)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string][]networthItemJSON{"networth_accounts": {{
		ID: a.ID, Balance: centsShort(a.Cents), Name: a.Name, Additional: true}}})
}

func networthAccountID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("account_id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no networth account %q", r.PathValue("account_id")), nil)
		return 0, false
	}
	return id, true
}

func (s *Server) updateNetworthAccount(w http.ResponseWriter, r *http.Request, u userRequest) {
	id, ok := networthAccountID(w, r)
	if !ok {
		return
	}
	a, ok := s.readNetworthAccount(w, r, u)
	if !ok {
		return
	}
	a.ID, a.UpdatedAt = id, s.now()
	s.networthResult(w, r, s.Store.UpdateNetworthAccount(r.Context(), a))
}

func (s *Server) deleteNetworthAccount(w http.ResponseWriter, r *http.Request, u userRequest) {
	id, ok := networthAccountID(w, r)
	if !ok {
		return
	}
	s.networthResult(w, r, s.Store.DeleteNetworthAccount(r.Context(), u.partnerID(), u.user, id))
}

func (s *Server) networthResult(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, warehouse.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no networth account %q for this user", r.PathValue("account_id")), nil)
	case err != nil:
		s.internalError(w, r, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
