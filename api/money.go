package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flatfiler/flatfiler/warehouse"
)

// Expenses and networth: the rules are the warehouse's (warehouse/
// reporting.go); here are their parameters and the spec's JSON.

type expenseJSON struct {
	Tag    string `json:"tag"`
	Amount string `json:"amount"`
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
	threshold = warehouse.DefaultExpenseThreshold
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
		expenses, err := s.Store.Expenses(r.Context(), u.partnerID(), u.accounts, from, to, threshold)
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		out := make([]expenseJSON, 0, len(expenses))
		for _, e := range expenses {
			out = append(out, expenseJSON{Tag: e.Tag, Amount: cents2(e.Cents)})
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

func (s *Server) networth(w http.ResponseWriter, r *http.Request, u userRequest) {
	n, err := s.Store.Networth(r.Context(), u.partnerID(), u.user, u.accounts)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	out := networthJSON{Assets: []networthItemJSON{}, Debts: []networthItemJSON{}, Histories: []networthHistoryJSON{}}
	for _, item := range n.Items {
		var v networthItemJSON
		if a := item.Account; a != nil {
			v = networthItemJSON{ID: warehouse.AccountNumber(u.partnerID(), a.ID), Balance: centsShort(item.Cents), Name: accountName(*a)}
		} else {
			v = networthItemJSON{ID: item.Manual.ID, Balance: centsShort(item.Cents), Name: item.Manual.Name, Additional: true}
		}
		if item.Debt {
			out.Debts = append(out.Debts, v)
		} else {
			out.Assets = append(out.Assets, v)
		}
	}
	for _, m := range n.History {
		out.Histories = append(out.Histories, networthHistoryJSON{Total: centsShort(m.Assets - m.Debts), TotalAsset: centsShort(m.Assets),
			TotalDebt: centsShort(m.Debts), Month: int(m.Month), Year: m.Year, SinceLastMonth: centsShort(m.SinceLastMonth)})
	}
	out.Meta.NetWorth, out.Meta.NetWorthChange = centsShort(n.Assets-n.Debts), centsShort(n.Change)
	out.Meta.TotalAssets, out.Meta.TotalDebts = centsShort(n.Assets), centsShort(n.Debts)
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
