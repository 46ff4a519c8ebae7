package api

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flatfiler/flatfiler/intake/partner"
	"github.com/flatfiler/flatfiler/stages/enrich"
	"github.com/flatfiler/flatfiler/warehouse"
)

// The reporting API (the spec's Users, Accounts, Transactions, Expenses,
// Networth, Tags and Ping), read from the warehouse per request.

const (
	defaultPerPage = 25
	maxPerPage     = 100
	maxPage        = 10_000_000
)

func (s *Server) reportRoutes(route func(pattern, name string, h http.HandlerFunc)) {

	route("GET "+v2+"/ping", "ping", s.authorized(keyOrToken, s.ping))
	route("GET "+v2+"/partners/current", "partner_current", s.authorized(keyOrToken, s.currentPartner))
	route("GET "+v2+"/tags", "tags", s.authorized(keyOrToken, s.defaultTags))
	route("GET "+v2+"/users", "users", s.authorized(keyOnly, s.users))
	route("GET "+v2+"/users/current", "user_current", s.authorized(keyOrToken, s.currentUser))
	route("GET "+v2+"/users/{user_id}", "user", s.authorized(keyOnly, s.forUser(s.user)))
	route("GET "+v2+"/users/{user_id}/tags", "user_tags", s.authorized(keyOrToken, s.forUser(s.userTags)))
	route("GET "+v2+"/users/{user_id}/accounts", "accounts", s.authorized(keyOrToken, s.forUser(s.accounts)))
	route("GET "+v2+"/users/{user_id}/accounts/all", "accounts_all", s.authorized(keyOrToken, s.forUser(s.accounts)))
	route("GET "+v2+"/users/{user_id}/accounts/{account_id}", "account", s.authorized(keyOrToken, s.forUser(s.account)))
	route("GET "+v2+"/users/{user_id}/accounts/{account_id}/transactions", "account_transactions", s.authorized(keyOrToken, s.forUser(s.accountTransactions)))
	route("GET "+v2+"/users/{user_id}/transactions", "transactions", s.authorized(keyOrToken, s.forUser(s.transactions)))
	route("GET "+v2+"/users/{user_id}/transactions/search", "transactions_search", s.authorized(keyOrToken, s.forUser(s.searchTransactions)))
	route("PUT "+v2+"/users/{user_id}/transactions/{transaction_id}", "transaction_update", s.authorized(keyOrToken, s.forUser(s.updateTransaction)))
	route("GET "+v2+"/users/{user_id}/expenses", "expenses", s.authorized(keyOrToken, s.forUser(s.expenses(""))))
	for _, period := range []string{"last_month", "this_month", "last_thirty_days"} {
		route("GET "+v2+"/users/{user_id}/expenses/"+period, "expenses_"+period, s.authorized(keyOrToken, s.forUser(s.expenses(period))))
	}
	route("GET "+v2+"/users/{user_id}/networth", "networth", s.authorized(keyOrToken, s.forUser(s.networth)))
	route("POST "+v2+"/users/{user_id}/networth/accounts", "networth_account_create", s.authorized(keyOrToken, s.forUser(s.createNetworthAccount)))
	route("PUT "+v2+"/users/{user_id}/networth/accounts/{account_id}", "networth_account_update", s.authorized(keyOrToken, s.forUser(s.updateNetworthAccount)))
	route("DELETE "+v2+"/users/{user_id}/networth/accounts/{account_id}", "networth_account_delete", s.authorized(keyOrToken, s.forUser(s.deleteNetworthAccount)))
}

// userRequest is a request about one user of the caller's partner, known
// to exist.
type userRequest struct {
	caller
	user     string
	accounts []warehouse.Account // without balances
}

func (u userRequest) partnerID() string { return u.partner.ID }

type userHandler func(w http.ResponseWriter, r *http.Request, u userRequest)

// forUser answers 404 for a user the partner does not have. Reads pass
// the warehouse's read gate (Store.AdmitRead); writes do not: a write
// waits for the store's write lock, which a commit holds, and must not
// hold readers out meanwhile.
func (s *Server) forUser(h userHandler) reportHandler {
	return func(w http.ResponseWriter, r *http.Request, c caller) {
		if r.Method == http.MethodGet {
			release, ok := s.Store.AdmitRead(r.Context())
			if !ok {
				return
			}
			defer release()
		}
		id := r.PathValue("user_id")
		// A user with accounts exists; only one without needs a second look.
		accts, err := s.Store.Accounts(r.Context(), c.partner.ID, id)
		ok := len(accts) > 0
		if err == nil && !ok {
			ok, err = s.Store.UserExists(r.Context(), c.partner.ID, id)
		}
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no user %q", id), []string{fmt.Sprintf("user_id: the partner has no user %q", id)})
			return
		}
		h(w, r, userRequest{caller: c, user: id, accounts: accts})
	}
}

func (s *Server) internalError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, r.Context().Err()) {
		return
	}
	if err = s.Store.Check(err); errors.Is(err, warehouse.ErrUnavailable) {
		s.Logger.Warn("api request refused: warehouse unavailable", "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "the warehouse is being reopened after a storage failure; nothing was lost, try again shortly", nil)
		return
	}
	s.Logger.Error("api request failed", "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "internal error; the server log has the details", nil)
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) ping(w http.ResponseWriter, _ *http.Request, _ caller) {
	writeJSON(w, http.StatusOK, map[string]string{"response": "PONG"})
}

// currentPartner is the spec's Get Current Partner, from the partner's
// record (`partner add`, `partner set`). The spec's id is an integer:
// partner.Number; partner_id is flatfiler's own.
func (s *Server) currentPartner(w http.ResponseWriter, _ *http.Request, c caller) {
	p := c.partner
	modules := p.Modules
	if modules == nil {
		modules = map[string]partner.Module{}
	}
	type partnerJSON struct {
		ID          int64                     `json:"id"`
		PartnerID   string                    `json:"partner_id"`
		Domain      string                    `json:"domain"`
		ProductName string                    `json:"product_name"`
		Modules     map[string]partner.Module `json:"modules"`
	}
	writeJSON(w, http.StatusOK, map[string][]partnerJSON{"partners": {{
		ID: p.Number(), PartnerID: p.ID, Domain: p.Domain, ProductName: p.ProductName, Modules: modules,
	}}})
}

func (s *Server) defaultTags(w http.ResponseWriter, _ *http.Request, _ caller) {
	writeJSON(w, http.StatusOK, map[string][]string{"tags": enrich.DefaultTags})
}

// Users.

type userJSON struct {
	ID          string   `json:"id"`
	Href        string   `json:"href"`
	Login       *string  `json:"login"`
	FirstName   string   `json:"first_name"`
	LastName    string   `json:"last_name"`
	Email       string   `json:"email"`
	LoginCount  int      `json:"login_count"`
	LastLoginAt *string  `json:"last_login_at"`
	PostalCode  string   `json:"postal_code"`
	BirthYear   *int     `json:"birth_year"`
	Sex         *string  `json:"sex"`
	CustomTags  []string `json:"custom_tags"`
}

// userView shows a user. Login, birth year and sex come only from the
// API's writes (null until one sets them); flatfiler has no logins, so
// login_count is 0 and last_login_at null.
func (s *Server) userView(r *http.Request, partnerID string, u warehouse.User) (userJSON, error) {
	tags, err := s.customTags(r, partnerID, u)
	if err != nil {
		return userJSON{}, err
	}
	p := u.Profile
	return userJSON{ID: u.ID, Href: userHref(r, u.ID), Login: p.Login, FirstName: u.FirstName, LastName: u.LastName, Email: u.Email, LoginCount: 0,
		PostalCode: u.ZipCode, BirthYear: p.BirthYear, Sex: p.Sex, CustomTags: tags}, nil
}

// userHref is the user's address on this server, as the request reached it.
func userHref(r *http.Request, id string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + v2 + "/users/" + url.PathEscape(id)
}

// customTags are the tags the user added: by the API's custom_tags, and
// on transactions and rules; sorted, without the default tags.
func (s *Server) customTags(r *http.Request, partnerID string, u warehouse.User) ([]string, error) {
	all, err := s.Store.UserTags(r.Context(), partnerID, u.ID)
	if err != nil {
		return nil, err
	}
	custom := []string{}
	for _, t := range append(all, u.Profile.CustomTags...) {
		if !enrich.IsDefaultTag(t) && !slices.Contains(custom, t) {
			custom = append(custom, t)
		}
	}
	slices.Sort(custom)
	return custom, nil
}

type pageMeta struct {
	CurrentPage int `json:"current_page"`
	TotalPages  int `json:"total_pages"`
}

func metaFor(p warehouse.Page, total int) pageMeta {
	return pageMeta{CurrentPage: p.Number, TotalPages: (total + p.Size - 1) / p.Size}
}

// pageParams reads page (from 1) and per_page (1 to 100, default 25).
func pageParams(q url.Values) (warehouse.Page, []string) {
	p := warehouse.Page{Number: 1, Size: defaultPerPage}
	var problems []string
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		// Past maxPage the page's offset would overflow (it went negative,
		// and a search's paging panicked); no listing has that many.
		if err != nil || n < 1 || n > maxPage {
			problems = append(problems, fmt.Sprintf("page: %q is not a page number (1 to %d)", v, maxPage))
		}
		p.Number = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPerPage {
			problems = append(problems, fmt.Sprintf("per_page: %q is not between 1 and %d", v, maxPerPage))
		}
		p.Size = n
	}
	return p, problems
}

func (s *Server) users(w http.ResponseWriter, r *http.Request, c caller) {
	defer s.Store.Reading()()
	page, problems := pageParams(r.URL.Query())
	if problems != nil {
		invalid(w, "invalid parameters", problems)
		return
	}
	users, total, err := s.Store.Users(r.Context(), c.partner.ID, page)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	out := make([]userJSON, 0, len(users))
	for _, u := range users {
		v, err := s.userView(r, c.partner.ID, u)
		if err != nil {
			s.internalError(w, r, err)
			return
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"meta": metaFor(page, total), "users": out})
}

func (s *Server) writeUser(w http.ResponseWriter, r *http.Request, partnerID, id string) {
	u, err := s.Store.User(r.Context(), partnerID, id)
	if errors.Is(err, warehouse.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no user %q", id), nil)
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	v, err := s.userView(r, partnerID, u)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]userJSON{"users": {v}})
}

func (s *Server) user(w http.ResponseWriter, r *http.Request, u userRequest) {
	s.writeUser(w, r, u.partnerID(), u.user)
}

func (s *Server) currentUser(w http.ResponseWriter, r *http.Request, c caller) {
	if !c.byToken() {
		writeError(w, http.StatusNotFound, "no current user: the API key acts for every user; call users/current with a user's JWT, or users/:user_id:", nil)
		return
	}
	defer s.Store.Reading()()
	s.writeUser(w, r, c.partner.ID, c.user)
}

func (s *Server) userTags(w http.ResponseWriter, r *http.Request, u userRequest) {
	stored, err := s.Store.User(r.Context(), u.partnerID(), u.user)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	custom, err := s.customTags(r, u.partnerID(), stored)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]string{"tags": append(custom, enrich.DefaultTags...)})
}

// Accounts.

// fiJSON is the account's FI: the partner, numbered as partners/current
// numbers it.
type fiJSON struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

type balanceJSON struct {
	BalanceType string `json:"balance_type"`
	Balance     string `json:"balance"`
}

type accountJSON struct {
	ID                 int64   `json:"id"`
	Name               string  `json:"name"`
	Balance            *string `json:"balance"`
	ReferenceID        string  `json:"reference_id"`
	AggregationType    string  `json:"aggregation_type"`
	State              string  `json:"state"`
	HarvestUpdatedAt   string  `json:"harvest_updated_at"`
	AccountType        string  `json:"account_type"`
	DisplayAccountType string  `json:"display_account_type"`
	IncludeInExpenses  bool    `json:"include_in_expenses"`
	IncludeInBudget    bool    `json:"include_in_budget"`
	IncludeInCashflow  bool    `json:"include_in_cashflow"`
	IncludeInDashboard bool    `json:"include_in_dashboard"`
	IncludeInGoals     bool    `json:"include_in_goals"`
	IncludeInNetworth  bool    `json:"include_in_networth"`
	FI                 fiJSON  `json:"fi"`
	// OtherBalances is the spec's object: the balance the account shows,
	// with its type; null without balances. Balances lists every balance
	// of the latest snapshot (the spec prints only one).
	OtherBalances *balanceJSON  `json:"other_balances"`
	Balances      []balanceJSON `json:"balances"`
}

func accountName(a warehouse.Account) string {
	if a.UserName != "" {
		return a.UserName
	}
	if a.Nickname != "" {
		return a.Nickname
	}
	return a.FIName
}

func (s *Server) accountView(partnerID string, a warehouse.Account) accountJSON {
	counted := warehouse.IncludedInExpenses(a.Type)
	v := accountJSON{
		ID: warehouse.AccountNumber(partnerID, a.ID), Name: accountName(a), ReferenceID: a.ID,
		AggregationType: "partner", State: "active", HarvestUpdatedAt: accountTime(a.UpdatedAt),
		AccountType: a.Type, DisplayAccountType: cmp.Or(a.DisplayType, a.Type),
		IncludeInExpenses: counted, IncludeInBudget: counted, IncludeInCashflow: counted,
		IncludeInDashboard: true, IncludeInGoals: true, IncludeInNetworth: true,
		FI:       fiJSON{ID: partner.NumberOf(partnerID), Name: partnerID},
		Balances: []balanceJSON{},
	}
	if a.State != "open" {
		v.State = a.State
	}
	if typ, c, ok := warehouse.PrimaryBalance(a); ok {
		b := cents2(c)
		v.Balance = &b
		v.OtherBalances = &balanceJSON{BalanceType: strings.ToLower(typ), Balance: b}
	}
	for _, b := range a.Balances {
		v.Balances = append(v.Balances, balanceJSON{BalanceType: strings.ToLower(b.Type), Balance: cents2(b.Cents)})
	}
	return v
}

func (s *Server) accounts(w http.ResponseWriter, r *http.Request, u userRequest) {
	accts := u.accounts
	if err := s.Store.WithBalances(r.Context(), accts); err != nil {
		s.internalError(w, r, err)
		return
	}
	out := make([]accountJSON, 0, len(accts))
	for _, a := range accts {
		out = append(out, s.accountView(u.partnerID(), a))
	}
	writeJSON(w, http.StatusOK, map[string][]accountJSON{"accounts": out})
}

// findAccount resolves :account_id: among the user's accounts: the id the
// API shows, or the partner's own account id (reference_id).
func findAccount(partnerID string, accts []warehouse.Account, ref string) (warehouse.Account, bool) {
	for _, a := range accts {
		if a.ID == ref {
			return a, true
		}
	}
	if n, err := strconv.ParseInt(ref, 10, 64); err == nil {
		for _, a := range accts {
			if warehouse.AccountNumber(partnerID, a.ID) == n {
				return a, true
			}
		}
	}
	return warehouse.Account{}, false
}

func (s *Server) userAccount(w http.ResponseWriter, r *http.Request, u userRequest) (warehouse.Account, bool) {
	ref := r.PathValue("account_id")
	a, ok := findAccount(u.partnerID(), u.accounts, ref)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("user %q has no account %q", u.user, ref),
			[]string{fmt.Sprintf("account_id: %q is not one of the user's accounts (its id or reference_id)", ref)})
		return warehouse.Account{}, false
	}
	return a, true
}

func (s *Server) account(w http.ResponseWriter, r *http.Request, u userRequest) {
	a, ok := s.userAccount(w, r, u)
	if !ok {
		return
	}
	one := []warehouse.Account{a}
	if err := s.Store.WithBalances(r.Context(), one); err != nil {
		s.internalError(w, r, err)
		return
	}
	a = one[0]
	writeJSON(w, http.StatusOK, map[string][]accountJSON{"accounts": {s.accountView(u.partnerID(), a)}})
}
