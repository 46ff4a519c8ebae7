package api

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/flatfiler/flatfiler/pipeline"
	"github.com/flatfiler/flatfiler/warehouse"
)

// The spec's account writes (Update Account, Delete Account) and Get
// Account Investments.

func (s *Server) accountRoutes(route func(pattern, name string, h http.HandlerFunc)) {
	route("PUT "+v2+"/users/{user_id}/accounts/{account_id}", "account_update", s.authorized(keyOrToken, s.forUser(s.updateAccount)))
	route("DELETE "+v2+"/users/{user_id}/accounts/{account_id}", "account_delete", s.authorized(keyOrToken, s.forUser(s.deleteAccount)))
	route("GET "+v2+"/users/{user_id}/accounts/{account_id}/investments", "account_investments", s.authorized(keyOrToken, s.forUser(s.investments)))
}

// accountBody is the spec's {"account": {...}}.
type accountBody struct {
	Account *struct {
		Name               *string `json:"name"`
		AccountType        *string `json:"account_type"`
		DisplayAccountType *string `json:"display_account_type"`
	} `json:"account"`
}

const maxAccountText = 255

func (s *Server) updateAccount(w http.ResponseWriter, r *http.Request, u userRequest) {
	a, ok := s.userAccount(w, r, u)
	if !ok {
		return
	}
	var body accountBody
	if !readBody(w, r, 1<<16, "Error in account", &body) {
		return
	}
	if body.Account == nil {
		invalid(w, "Error in account", []string{`account: required: {"account": {"name": ...}}`})
		return
	}
	edit := warehouse.AccountEdit{Partner: u.partnerID(), Owner: u.user, Account: a.ID, Edited: s.now()}
	var problems []string
	text := func(param string, v *string) *string {
		if v == nil {
			return nil
		}
		t := strings.TrimSpace(*v)
		if len([]rune(t)) > maxAccountText {
			problems = append(problems, fmt.Sprintf("account.%s: longer than %d characters", param, maxAccountText))
		}
		return &t
	}
	in := body.Account
	edit.Name = text("name", in.Name)
	edit.DisplayType = text("display_account_type", in.DisplayAccountType)
	if in.AccountType != nil {
		typ := strings.ToLower(strings.TrimSpace(*in.AccountType))
		edit.Type = &typ
	}
	if edit.Name == nil && edit.DisplayType == nil && edit.Type == nil {
		problems = append(problems, "account: nothing to change: give name, account_type or display_account_type")
	}
	if problems != nil {
		invalid(w, "Error in account", problems)
		return
	}
	err := s.Store.EditAccount(r.Context(), edit)
	switch {
	case errors.Is(err, warehouse.ErrInvalid):
		invalid(w, "Error in account", []string{"account." + strings.TrimSuffix(err.Error(), ": "+warehouse.ErrInvalid.Error())})
	case errors.Is(err, warehouse.ErrNotFound):
		// Deleted since the directory was read.
		writeError(w, http.StatusNotFound, fmt.Sprintf("user %q has no account %q", u.user, r.PathValue("account_id")),
			[]string{"account_id: " + r.PathValue("account_id") + " is not one of the user's accounts"})
	case err != nil:
		s.internalError(w, r, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// deleteAccount removes the account with its balances and transactions,
// as a file's account Delete does: it is one, through the pipeline.
func (s *Server) deleteAccount(w http.ResponseWriter, r *http.Request, u userRequest) {
	a, ok := s.userAccount(w, r, u)
	if !ok {
		return
	}
	var doc bytes.Buffer
	doc.WriteString("<Accounts><Account><Details><Action>Delete</Action><PartnerCustomerId>")
	escapeText(&doc, u.user)
	doc.WriteString("</PartnerCustomerId><AccountId>")
	escapeText(&doc, a.ID)
	doc.WriteString("</AccountId></Details></Account></Accounts>")
	if s.apply(w, r, "Error in account", u.partnerID(), "api:DELETE account "+a.ID, &doc, pipeline.Options{}) {
		w.WriteHeader(http.StatusNoContent)
	}
}

type investmentBalanceJSON struct {
	BalanceType string `json:"balance_type"`
	Description string `json:"description"`
	Balance     string `json:"balance"`
}

// investments answers the spec's Get Account Investments from what is
// stored: the latest snapshot's balances. Files carry no positions (the
// spec creates none for investment accounts), so positions is empty.
func (s *Server) investments(w http.ResponseWriter, r *http.Request, u userRequest) {
	a, ok := s.userAccount(w, r, u)
	if !ok {
		return
	}
	if a.Type != "investment" {
		writeError(w, http.StatusNotFound, fmt.Sprintf("account %q is not an investment account", r.PathValue("account_id")),
			[]string{fmt.Sprintf("account_id: %s is a %s account; only investment accounts have investments", r.PathValue("account_id"), a.Type)})
		return
	}
	one := []warehouse.Account{a}
	if err := s.Store.WithBalances(r.Context(), one); err != nil {
		s.internalError(w, r, err)
		return
	}
	out := struct {
		OtherBalances []investmentBalanceJSON `json:"other_balances"`
		Positions     []struct{}              `json:"positions"`
	}{OtherBalances: []investmentBalanceJSON{}, Positions: []struct{}{}}
	for _, b := range one[0].Balances {
		out.OtherBalances = append(out.OtherBalances, investmentBalanceJSON{BalanceType: b.Type, Description: b.Type, Balance: cents2(b.Cents)})
	}
	writeJSON(w, http.StatusOK, out)
}
