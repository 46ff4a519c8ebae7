package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/flatfiler/flatfiler/stages/enrich"
	"github.com/flatfiler/flatfiler/warehouse"
)

type tagJSON struct {
	Name    string          `json:"name"`
	Balance json.RawMessage `json:"balance"`
}

type transactionJSON struct {
	ID              string          `json:"id"`
	ReferenceID     string          `json:"reference_id"`
	TransactionType string          `json:"transaction_type"`
	Memo            string          `json:"memo"`
	Balance         json.RawMessage `json:"balance"`
	PostedAt        string          `json:"posted_at"`
	CreatedAt       string          `json:"created_at"`
	Nickname        string          `json:"nickname"`
	OriginalName    string          `json:"original_name"`
	CheckNumber     *string         `json:"check_number"`
	Tags            []tagJSON       `json:"tags"`
	Links           struct {
		Account int64 `json:"account"`
	} `json:"links"`
}

type accountRefJSON struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

type transactionsJSON struct {
	Meta         pageMeta          `json:"meta"`
	Accounts     []accountRefJSON  `json:"accounts"`
	Transactions []transactionJSON `json:"transactions"`
}

// transactionView shows a transaction as the spec does: balance is the
// absolute amount (transaction_type says which way), created_at is when a
// file last wrote it.
func transactionView(partnerID string, t warehouse.Transaction) transactionJSON {
	v := transactionJSON{
		ID: warehouse.TransactionUUID(partnerID, t.AccountID, t.ID), ReferenceID: t.ID,
		TransactionType: strings.ToUpper(t.Type[:1]) + t.Type[1:], Memo: t.Memo, Balance: centsNumber(abs(t.Cents)),
		PostedAt: transactionStamp(t.PostedAt), CreatedAt: transactionStamp(t.UpdatedAt),
		Nickname: t.Nickname, OriginalName: t.OriginalName, Tags: []tagJSON{},
	}
	if t.CheckNumber != "" {
		c := t.CheckNumber
		v.CheckNumber = &c
	}
	for _, tag := range t.Tags() {
		v.Tags = append(v.Tags, tagJSON{Name: tag.Name, Balance: centsNumber(tag.Cents)})
	}
	v.Links.Account = warehouse.AccountNumber(partnerID, t.AccountID)
	return v
}

func abs(c int64) int64 {
	if c < 0 {
		return -c
	}
	return c
}

// listTransactions writes a page of the user's transactions on accts.
// listTransactions answers a page of the accounts' transactions that pass
// f; search: the spec's search, which has no paging.
func (s *Server) listTransactions(w http.ResponseWriter, r *http.Request, u userRequest, accts []warehouse.Account, f warehouse.TransactionFilter, search bool) {
	page, problems := pageParams(r.URL.Query())
	if problems != nil {
		invalid(w, "invalid parameters", problems)
		return
	}
	meta := func(total int) pageMeta { return metaFor(page, total) }
	if q := r.URL.Query(); search && !q.Has("page") && !q.Has("per_page") {
		// The spec's search has no paging: a client following it expects
		// every match, and gets them (one user's transactions at most).
		page = warehouse.Page{}
		meta = func(int) pageMeta { return pageMeta{CurrentPage: 1, TotalPages: 1} }
	}
	txns, total, err := s.Store.Transactions(r.Context(), u.partnerID(), accts, f, page)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	out := transactionsJSON{Meta: meta(total), Accounts: []accountRefJSON{}, Transactions: []transactionJSON{}}
	seen := map[string]bool{}
	for _, t := range txns {
		out.Transactions = append(out.Transactions, transactionView(u.partnerID(), t))
		seen[t.AccountID] = true
	}
	for _, a := range accts {
		if seen[a.ID] {
			out.Accounts = append(out.Accounts, accountRefJSON{ID: warehouse.AccountNumber(u.partnerID(), a.ID), Name: accountName(a)})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) transactions(w http.ResponseWriter, r *http.Request, u userRequest) {
	s.listTransactions(w, r, u, u.accounts, warehouse.TransactionFilter{}, false)
}

func (s *Server) accountTransactions(w http.ResponseWriter, r *http.Request, u userRequest) {
	a, ok := s.userAccount(w, r, u)
	if !ok {
		return
	}
	s.listTransactions(w, r, u, []warehouse.Account{a}, warehouse.TransactionFilter{}, false)
}

// listParam reads a list given as name[]=a&name[]=b, name=a&name=b or
// name=a,b.
func listParam(q url.Values, name string) []string {
	var out []string
	for _, v := range append(q[name+"[]"], q[name]...) {
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

func dateParam(q url.Values, name string, problems *[]string) time.Time {
	v := q.Get(name)
	if v == "" {
		return time.Time{}
	}
	d, err := time.Parse(time.DateOnly, v)
	if err != nil {
		*problems = append(*problems, fmt.Sprintf("%s: %q is not a date (YYYY-MM-DD)", name, v))
	}
	return d
}

func boolParam(q url.Values, name string, problems *[]string) bool {
	switch v := q.Get(name); strings.ToLower(v) {
	case "", "0", "false":
		return false
	case "1", "true":
		return true
	default:
		*problems = append(*problems, fmt.Sprintf("%s: %q is not 1 or 0", name, v))
		return false
	}
}

// searchParams reads a search's filter and the accounts it names
// (account_ids, to be found among the user's), or the problems with them.
func searchParams(q url.Values) (f warehouse.TransactionFilter, accountRefs, problems []string) {
	f = warehouse.TransactionFilter{
		Query: strings.TrimSpace(q.Get("q")), Tags: listParam(q, "tags"),
		Untagged: boolParam(q, "untagged", &problems),
		From:     dateParam(q, "begin_on", &problems), To: dateParam(q, "end_on", &problems),
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From) {
		problems = append(problems, "end_on: before begin_on")
	}
	return f, listParam(q, "account_ids"), problems
}

func (s *Server) searchTransactions(w http.ResponseWriter, r *http.Request, u userRequest) {
	accts := u.accounts
	f, refs, problems := searchParams(r.URL.Query())
	var within []warehouse.Account
	for _, ref := range refs {
		a, ok := findAccount(u.partnerID(), accts, ref)
		if !ok {
			problems = append(problems, fmt.Sprintf("account_ids: %q is not an account of user %q", ref, u.user))
			continue
		}
		within = append(within, a)
	}
	if problems != nil {
		invalid(w, "invalid search parameters", problems)
		return
	}
	if within != nil {
		accts = within
	}
	s.listTransactions(w, r, u, accts, f, true)
}

// findTransaction resolves :transaction_id: among the user's transactions:
// the UUID the API shows, or the partner's transaction id (reference_id)
// when it names one transaction of the user.
func (s *Server) findTransaction(r *http.Request, u userRequest, ref string) (warehouse.Transaction, error) {
	txns, _, err := s.Store.Transactions(r.Context(), u.partnerID(), u.accounts, warehouse.TransactionFilter{}, warehouse.Page{})
	if err != nil {
		return warehouse.Transaction{}, err
	}
	_, uuidErr := uuid.Parse(ref)
	var found []warehouse.Transaction
	for _, t := range txns {
		if uuidErr == nil && warehouse.TransactionUUID(u.partnerID(), t.AccountID, t.ID) == strings.ToLower(ref) || uuidErr != nil && t.ID == ref {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return warehouse.Transaction{}, fmt.Errorf("user %q has no transaction %q: %w", u.user, ref, warehouse.ErrNotFound)
	case 1:
		return found[0], nil
	}
	return warehouse.Transaction{}, fmt.Errorf("%w: reference id %q names %d transactions of user %q (on different accounts); use the transaction's id",
		errAmbiguous, ref, len(found), u.user)
}

var errAmbiguous = errors.New("ambiguous")

// transactionUpdate is the spec's PUT body.
type transactionUpdate struct {
	Transaction *struct {
		Nickname *string `json:"nickname"`
	} `json:"transaction"`
	Tagging *struct {
		Type    string    `json:"type"`
		Regular *[]string `json:"regular"` // nil: absent; empty: untag
		Split   []struct {
			Name  string      `json:"name"`
			Value json.Number `json:"value"`
		} `json:"split"`
		Repeat   bool   `json:"repeat"`
		Account  string `json:"account"`
		PostedAt string `json:"posted_at"`
	} `json:"tagging"`
}

// updateTransaction sets a transaction's nickname and tags. With
// tagging.repeat it also adds a rule: the user's transactions from the same
// merchant get the nickname and tag, those stored now (posted_at any_date)
// and those future files bring.
func (s *Server) updateTransaction(w http.ResponseWriter, r *http.Request, u userRequest) {
	var body transactionUpdate
	if !readBody(w, r, 1<<16, "Error in transaction", &body) {
		return
	}
	t, err := s.findTransaction(r, u, r.PathValue("transaction_id"))
	switch {
	case errors.Is(err, warehouse.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error(), nil)
		return
	case errors.Is(err, errAmbiguous):
		invalid(w, "Error in transaction", []string{"transaction_id: " + err.Error()})
		return
	case err != nil:
		s.internalError(w, r, err)
		return
	}
	edit := warehouse.TransactionEdit{Partner: u.partnerID(), Account: t.AccountID, Transaction: t.ID, Edited: s.now()}
	var problems []string
	if body.Transaction != nil && body.Transaction.Nickname != nil {
		n := strings.TrimSpace(*body.Transaction.Nickname)
		switch {
		case n == "":
			problems = append(problems, "transaction.nickname: empty")
		case len([]rune(n)) > 255:
			problems = append(problems, "transaction.nickname: longer than 255 characters")
		}
		edit.Nickname = &n
	}
	var rule *enrich.UserRule
	if tg := body.Tagging; tg != nil {
		switch tg.Type {
		case "regular":
			edit.Tags = []warehouse.TagPart{}
			var regular []string
			if tg.Regular != nil {
				regular = *tg.Regular
			}
			switch len(regular) {
			case 0:
				// Only an explicit empty list removes the tags: a client
				// that left the list out meant to set one.
				if tg.Regular == nil {
					problems = append(problems, `tagging.regular: required with type regular: ["Tag"] to set a tag, [] to remove the tags`)
				}
			case 1:
				if err := enrich.CheckTagName(regular[0]); err != nil {
					problems = append(problems, "tagging.regular: "+err.Error())
				}
				edit.Tags = []warehouse.TagPart{{Name: regular[0], Cents: abs(t.Cents)}}
			default:
				problems = append(problems, "tagging.regular: one tag; to divide a transaction among tags use type split")
			}
		case "split":
			var parts []enrich.TagAmount
			for i, p := range tg.Split {
				c, ok := parseCents(p.Value)
				if !ok {
					problems = append(problems, fmt.Sprintf("tagging.split[%d].value: %q is not an amount with at most two decimals", i, p.Value))
				}
				parts = append(parts, enrich.TagAmount{Name: p.Name, Cents: c})
			}
			if problems == nil {
				if err := enrich.CheckSplit(t.Cents, parts); err != nil {
					problems = append(problems, "tagging."+err.Error())
				}
			}
			edit.Tags = []warehouse.TagPart{}
			for _, p := range parts {
				edit.Tags = append(edit.Tags, warehouse.TagPart{Name: p.Name, Cents: p.Cents})
			}
			if tg.Repeat {
				problems = append(problems, "tagging.repeat: split tags are not supported by rules, as they are specific to an exact amount")
			}
		case "":
			problems = append(problems, "tagging.type: required when tagging is given: regular or split")
		default:
			problems = append(problems, fmt.Sprintf("tagging.type: %q is not regular or split", tg.Type))
		}
		if tg.Repeat && tg.Type == "regular" {
			rule, problems = s.ruleFor(u, t, edit, tg.Account, tg.PostedAt, problems)
		}
	}
	if edit.Nickname == nil && edit.Tags == nil {
		problems = append(problems, "nothing to change: give transaction.nickname or tagging")
	}
	if problems != nil {
		invalid(w, "Error in transaction", problems)
		return
	}
	if err := s.Store.EditTransaction(r.Context(), edit); err != nil {
		s.internalError(w, r, err)
		return
	}
	if rule != nil {
		if err := s.addRule(r, *rule, body.Tagging.PostedAt != "future_date"); err != nil {
			s.internalError(w, r, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// ruleFor makes the user rule tagging.repeat asks for.
func (s *Server) ruleFor(u userRequest, t warehouse.Transaction, edit warehouse.TransactionEdit, account, postedAt string, problems []string) (*enrich.UserRule, []string) {
	if len(edit.Tags) != 1 {
		return nil, append(problems, "tagging.repeat: a rule needs one regular tag")
	}
	if t.MerchantKey == "" {
		return nil, append(problems, "tagging.repeat: this transaction was not enriched, so there is no merchant for a rule to match")
	}
	now := s.now().UTC()
	rule := &enrich.UserRule{ID: uuid.NewString(), Partner: u.partnerID(), User: u.user, MatchKey: t.MerchantKey,
		Nickname: t.Nickname, Tag: edit.Tags[0].Name, CreatedAt: now}
	if edit.Nickname != nil {
		rule.Nickname = *edit.Nickname
	}
	switch account {
	case "", "all_accounts":
	case "current_account":
		rule.Account = t.AccountID
	default:
		problems = append(problems, fmt.Sprintf("tagging.account: %q is not current_account or all_accounts", account))
	}
	switch postedAt {
	case "", "any_date":
	case "future_date":
		rule.PostedFrom = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	default:
		problems = append(problems, fmt.Sprintf("tagging.posted_at: %q is not any_date or future_date", postedAt))
	}
	if rule.Nickname == "" {
		rule.Nickname = edit.Tags[0].Name
	}
	return rule, problems
}

// addRule stores a user rule and puts it in force for the files to come.
func (s *Server) addRule(r *http.Request, rule enrich.UserRule, retag bool) error {
	n, err := s.Store.AddUserRule(r.Context(), rule, retag)
	if err != nil {
		return err
	}
	if s.Enrich != nil {
		if err := s.Enrich.AddUserRule(rule); err != nil {
			return err
		}
	}
	s.Logger.Info("user rule added", "partner", rule.Partner, "user", rule.User, "rule", rule.ID, "merchant", rule.MatchKey,
		"tag", rule.Tag, "retagged", n)
	return nil
}
