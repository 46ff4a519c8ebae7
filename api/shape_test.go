package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flatfiler/flatfiler/intake/partner"
)

// The spec's examples, copied verbatim into testdata/spec, are the shapes a
// client generated from them expects. sameShape holds each answer to its
// example: every key the example has, with a value of the same JSON type
// (null only where nullable allows it). Keys the answer adds are allowed.

// nullable are the keys that may be null where the spec prints a value,
// each for a reason README's "Payload shapes" gives: a user's login, birth
// year and sex until an API write sets them, last_login_at (flatfiler has
// no logins), an account's balance without a snapshot of its type.
var nullable = []string{"login", "birth_year", "sex", "last_login_at", "balance", "other_balances"}

// cashEdgeOnly are keys of CashEdge aggregation, which flatfiler does not do.
var cashEdgeOnly = []string{"error", "cashedge_account_type"}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	}
	return fmt.Sprintf("%T", v)
}

// sameShape lists where got departs from the spec's example.
func sameShape(path string, spec, got any) []string {
	if got == nil {
		if spec == nil || slices.Contains(nullable, path[strings.LastIndexByte(path, '.')+1:]) {
			return nil
		}
		return []string{fmt.Sprintf("%s: null, the spec has %s", path, jsonType(spec))}
	}
	if st, gt := jsonType(spec), jsonType(got); st != gt && st != "null" {
		return []string{fmt.Sprintf("%s: %s, the spec has %s", path, gt, st)}
	}
	var out []string
	switch s := spec.(type) {
	case map[string]any:
		g := got.(map[string]any)
		for k, v := range s {
			if slices.Contains(cashEdgeOnly, k) {
				continue
			}
			gv, ok := g[k]
			if !ok {
				out = append(out, fmt.Sprintf("%s.%s: missing", path, k))
				continue
			}
			out = append(out, sameShape(path+"."+k, v, gv)...)
		}
	case []any:
		if len(s) > 0 {
			for i, gv := range got.([]any) {
				out = append(out, sameShape(fmt.Sprintf("%s[%d]", path, i), s[0], gv)...)
			}
		}
	}
	return out
}

func decodeNumbers(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	return v
}

func specExample(t *testing.T, name string) any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "spec", name))
	if err != nil {
		t.Fatal(err)
	}
	return decodeNumbers(t, b)
}

// wantShape GETs path and holds the answer to the spec's example.
func (e *env) wantShape(path string, a auth, example string) {
	e.t.Helper()
	code, body := e.do("GET", path, a, "")
	if code != 200 {
		e.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	for _, p := range sameShape("$", specExample(e.t, example), decodeNumbers(e.t, body)) {
		e.t.Errorf("GET %s: %s", path, p)
	}
}

func TestShapesMatchSpec(t *testing.T) {
	e := newEnv(t)
	a := basic(demoKey)
	user := "/users/" + specUser
	var accts struct{ Accounts []account }
	e.get(user+"/accounts", a, &accts)
	e.wantShape(user+"/accounts", a, "accounts.json")
	e.wantShape(user+"/accounts/all", a, "accounts.json")
	e.wantShape(fmt.Sprintf("%s/accounts/%d", user, accts.Accounts[0].ID), a, "account.json")
	e.wantShape(user, a, "user.json")
	e.wantShape("/ping", a, "ping.json")
	e.wantShape("/tags", a, "tags.json")
	e.wantShape(user+"/tags", a, "user_tags.json")
	e.wantShape(user+"/transactions", a, "transactions.json")
	for _, ac := range accts.Accounts {
		if ac.ReferenceID == "0000129251-S0011" { // the account of the spec's transaction 83
			e.wantShape(fmt.Sprintf("%s/accounts/%d/transactions", user, ac.ID), a, "account_transactions.json")
		}
	}
	e.wantShape(user+"/transactions/search?q=Dunkin", a, "search.json")
	e.wantShape(user+"/expenses?begin_on=2016-07-01&end_on=2016-07-31", a, "expenses.json")
	e.wantShape(user+"/networth", a, "networth.json")
	e.wantShape("/users/current", bearer(e.demoToken(specUser)), "user_current.json")
	product := "Money Manager"
	if err := e.srv.Partners.Set("demo", partner.Changes{ProductName: &product, Modules: map[string]partner.Module{
		"mobile": {Name: "Mobile Money Manager", LogoutURL: "https://www.example.com/logout",
			BackToOnlineBankingURL: "https://www.example.com/back_to_olb", BackToOnlineBankingLabel: "Back to Online Banking"}}}); err != nil {
		t.Fatal(err)
	}
	e.wantShape("/partners/current", a, "partners_current.json")
}

// The checker itself: a changed type and a missing key are caught.
func TestSameShapeCatches(t *testing.T) {
	spec := decodeNumbers(t, []byte(`{"a": [{"id": 1, "o": {"t": "x"}}]}`))
	for got, want := range map[string]int{
		`{"a": [{"id": 2, "o": {"t": "y"}, "extra": 1}]}`: 0,
		`{"a": [{"id": null, "o": {"t": "y"}}]}`:          1,
		`{"a": [{"id": "2", "o": {"t": "y"}}]}`:           1,
		`{"a": [{"id": 2, "o": [{"t": "y"}]}]}`:           1,
		`{"a": [{"o": {"t": "y"}}, {"id": 1}]}`:           2,
	} {
		if n := len(sameShape("$", spec, decodeNumbers(t, []byte(got)))); n != want {
			t.Errorf("%s: %d problems, want %d", got, n, want)
		}
	}
}
