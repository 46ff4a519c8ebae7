package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flatfiler/flatfiler/api"
	"github.com/flatfiler/flatfiler/fixtures/gen"
	"github.com/flatfiler/flatfiler/intake/partner"
	"github.com/flatfiler/flatfiler/pipeline"
	"github.com/flatfiler/flatfiler/warehouse"
)

const (
	demoKey    = "demo-api-key-0123456789abcdef"
	demoDomain = "pfm.demo.example"
	otherKey   = "other-api-key-0123456789abcdef"
	specUser   = "322079353"
	// The spec's JWT section: its example token, signed with this key.
	specKey   = "1e44a00ceafb5b8b0da5"
	specToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjMiLCJhdWQiOiJmaS5teWJhbmtocS5jb20iLCJpYXQiOjE0NjcwMzgzNzQsImV4cCI6MTQ2NzAzOTM3NCwiaXNzIjoiMTIwMyJ9.FCu8RexBWr9qEOVbnJzjefhCg9oKU9yz02r30SYGVRw"
)

// clock is the server's time in these tests: days after the spec's
// transactions (2016-07-07).
var clock = time.Date(2016, 7, 20, 12, 0, 0, 0, time.UTC)

type env struct {
	t        *testing.T
	url      string
	srv      *api.Server
	pipeline *pipeline.Pipeline
	now      time.Time
}

// newEnv starts the API over real HTTP on a real warehouse file holding the
// spec's combined example for partner demo, and a user 999 of partner other.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	reg, err := partner.Open(filepath.Join(dir, "partners"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct{ id, key, domain string }{
		{"demo", demoKey, demoDomain}, {"other", otherKey, "pfm.other.example"}, {"1203", specKey, "fi.mybankhq.com"},
	} {
		if _, err := reg.Add(p.id, partner.NewOptions{Domain: p.domain, APIKey: p.key}); err != nil {
			t.Fatal(err)
		}
	}
	store, err := warehouse.Open(ctx, filepath.Join(dir, "warehouse.duckdb"), warehouse.Options{AccountDirectory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	engine, err := pipeline.LoadEnrichment(ctx, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, pipeline: &pipeline.Pipeline{Store: store, Enrich: engine, Metrics: pipeline.NewMetrics(prometheus.NewRegistry())}, now: clock}
	e.srv = &api.Server{Partners: reg, Store: store, Enrich: engine, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Now: func() time.Time { return e.now }}
	hs := httptest.NewServer(e.srv.Handler())
	t.Cleanup(hs.Close)
	e.url = hs.URL + "/api/v2"
	e.ingest("demo", "../fixtures/spec/combined.xml", "2016-07-08")
	e.ingest("other", "testdata/other.xml", "2016-07-08")
	return e
}

func (e *env) ingest(partnerID, path, asOf string) {
	e.t.Helper()
	d, _ := time.Parse(time.DateOnly, asOf)
	rep, err := e.pipeline.IngestFile(context.Background(), path, pipeline.Options{Partner: partnerID, AsOf: d})
	if err != nil {
		e.t.Fatalf("ingest %s: %v", path, err)
	}
	if rep.Status == pipeline.StatusError {
		e.t.Fatalf("ingest %s: %+v", path, rep)
	}
}

// auth sets a request's credentials.
type auth func(*http.Request)

func basic(key string) auth { return func(r *http.Request) { r.SetBasicAuth(key, "") } }
func bearer(tok string) auth {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

// token signs claims with golang-jwt, as a partner's SDK would.
func token(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// demoToken is a valid JWT of partner demo for user, issued a minute ago.
func (e *env) demoToken(user string) string {
	iat := e.now.Add(-time.Minute).Unix()
	return token(e.t, jwt.SigningMethodHS256, []byte(demoKey), jwt.MapClaims{
		"iss": "demo", "sub": user, "aud": demoDomain, "iat": iat, "exp": iat + 3600})
}

func (e *env) do(method, path string, a auth, body string) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if a != nil {
		a(req)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// get fetches path and decodes a 200 answer into out.
func (e *env) get(path string, a auth, out any) {
	e.t.Helper()
	code, body := e.do("GET", path, a, "")
	if code != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		e.t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

type errorJSON struct {
	Error struct {
		Message string   `json:"message"`
		Data    []string `json:"data"`
	} `json:"error"`
}

func (e *env) wantError(method, path string, a auth, body string, status int, contains string) errorJSON {
	e.t.Helper()
	code, b := e.do(method, path, a, body)
	var out errorJSON
	if err := json.Unmarshal(b, &out); err != nil || out.Error.Message == "" {
		e.t.Fatalf("%s %s: want the spec's error body, got %d %s", method, path, code, b)
	}
	if code != status {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, status, b)
	}
	// Every error names what was wrong in data, in the request's terms.
	if len(out.Error.Data) == 0 || out.Error.Data[0] == "" {
		e.t.Fatalf("%s %s: error without data: %s", method, path, b)
	}
	for _, internal := range []string{"Go struct", "Go value", "api.", "warehouse.", "json:", "*"} {
		if strings.Contains(string(b), internal) {
			e.t.Fatalf("%s %s: error shows Go internals (%q): %s", method, path, internal, b)
		}
	}
	if all := out.Error.Message + " " + strings.Join(out.Error.Data, " "); !strings.Contains(all, contains) {
		e.t.Fatalf("%s %s: error %q does not say %q", method, path, all, contains)
	}
	return out
}

type account struct {
	ID                int64  `json:"id"`
	Name              string `json:"name"`
	Balance           string `json:"balance"`
	ReferenceID       string `json:"reference_id"`
	AccountType       string `json:"account_type"`
	IncludeInExpenses bool   `json:"include_in_expenses"`
}

type transaction struct {
	ID              string      `json:"id"`
	ReferenceID     string      `json:"reference_id"`
	TransactionType string      `json:"transaction_type"`
	Memo            string      `json:"memo"`
	Balance         json.Number `json:"balance"`
	PostedAt        string      `json:"posted_at"`
	Nickname        string      `json:"nickname"`
	OriginalName    string      `json:"original_name"`
	CheckNumber     *string     `json:"check_number"`
	Tags            []struct {
		Name    string      `json:"name"`
		Balance json.Number `json:"balance"`
	} `json:"tags"`
	Links struct {
		Account int64 `json:"account"`
	} `json:"links"`
}

type transactionPage struct {
	Meta struct {
		CurrentPage int `json:"current_page"`
		TotalPages  int `json:"total_pages"`
	} `json:"meta"`
	Accounts []struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	} `json:"accounts"`
	Transactions []transaction `json:"transactions"`
}

type expenses struct {
	Expenses []struct {
		Tag    string `json:"tag"`
		Amount string `json:"amount"`
	} `json:"expenses"`
}

func (x expenses) String() string {
	var parts []string
	for _, e := range x.Expenses {
		parts = append(parts, e.Tag+"="+e.Amount)
	}
	return strings.Join(parts, " ")
}

type networth struct {
	Meta struct {
		NetWorth       string `json:"net_worth"`
		NetWorthChange string `json:"net_worth_change"`
		TotalAssets    string `json:"total_assets"`
		TotalDebts     string `json:"total_debts"`
	} `json:"meta"`
	Assets []struct {
		ID         int64  `json:"id"`
		Balance    string `json:"balance"`
		Name       string `json:"name"`
		Additional bool   `json:"additional_networth_account"`
	} `json:"assets"`
	Debts []struct {
		ID         int64  `json:"id"`
		Balance    string `json:"balance"`
		Name       string `json:"name"`
		Additional bool   `json:"additional_networth_account"`
	} `json:"debts"`
	Histories []struct {
		Total          string `json:"total"`
		TotalAsset     string `json:"total_asset"`
		TotalDebt      string `json:"total_debt"`
		Month          int    `json:"month"`
		Year           int    `json:"year"`
		SinceLastMonth string `json:"since_last_month"`
	} `json:"networth_histories"`
}

func (n networth) history() string {
	var parts []string
	for _, h := range n.Histories {
		parts = append(parts, fmt.Sprintf("%d-%02d:%s/%s/%s/%s", h.Year, h.Month, h.TotalAsset, h.TotalDebt, h.Total, h.SinceLastMonth))
	}
	return strings.Join(parts, " ")
}

// The acceptance walk: the spec's user 322079353 through a Basic key and a
// JWT, with totals worked out by hand from fixtures/spec/combined.xml.
func TestSpecUserThroughKeyAndJWT(t *testing.T) {
	e := newEnv(t)
	for name, a := range map[string]auth{"basic": basic(demoKey), "jwt": bearer(e.demoToken(specUser))} {
		t.Run(name, func(t *testing.T) {
			var accts struct{ Accounts []account }
			e.get("/users/"+specUser+"/accounts", a, &accts)
			// 12 accounts: the one without an AccountType was rejected.
			if len(accts.Accounts) != 12 {
				t.Fatalf("accounts: %d, want 12: %+v", len(accts.Accounts), accts.Accounts)
			}
			byRef := map[string]account{}
			for _, ac := range accts.Accounts {
				byRef[ac.ReferenceID] = ac
			}
			mm := byRef["0000129251-S0011"]
			if mm.Name != "SUPER MONEY MARKET" || mm.Balance != "430947.36" || mm.AccountType != "savings" || !mm.IncludeInExpenses || mm.ID == 0 {
				t.Errorf("money market account: %+v", mm)
			}
			if loan := byRef["0000129251-L0001"]; loan.Balance != "0.00" || loan.IncludeInExpenses {
				t.Errorf("loan: %+v", loan)
			}

			var page transactionPage
			e.get("/users/"+specUser+"/transactions", a, &page)
			// Transactions on investment accounts are not stored (the spec).
			if page.Meta.CurrentPage != 1 || page.Meta.TotalPages != 1 || len(page.Transactions) != 6 {
				t.Fatalf("transactions: meta %+v, %d transactions", page.Meta, len(page.Transactions))
			}
			var dunkin transaction
			for _, tx := range page.Transactions {
				if tx.ReferenceID == "83" {
					dunkin = tx
				}
			}
			if dunkin.TransactionType != "Debit" || dunkin.Balance != "10.00" || dunkin.Nickname != "Dunkin Donuts" ||
				dunkin.OriginalName != "Dunkin Donuts" || dunkin.PostedAt != "2016-07-07T00:00:00.000+00:00" ||
				len(dunkin.Tags) != 1 || dunkin.Tags[0].Name != "Diningout" || dunkin.Tags[0].Balance != "10.00" ||
				dunkin.Links.Account != mm.ID || dunkin.CheckNumber != nil || len(dunkin.ID) != 36 {
				t.Errorf("transaction 83: %+v", dunkin)
			}

			var nw networth
			e.get("/users/"+specUser+"/networth", a, &nw)
			// Assets: 5.13 + 430947.36 + 9868.66 + 11895.88 (RITA's) + 15 + 40 + 0 + 0 + 90 (KOBE's);
			// debts: the three loans' Outstanding, 0.00 + 25.00 + 25.00.
			if nw.Meta.TotalAssets != "452862.03" || nw.Meta.TotalDebts != "50.0" || nw.Meta.NetWorth != "452812.03" ||
				nw.Meta.NetWorthChange != "0.0" || len(nw.Assets) != 9 || len(nw.Debts) != 3 {
				t.Errorf("networth: %+v", nw.Meta)
			}
			if nw.history() != "2016-07:452862.03/50.0/452812.03/0.0" {
				t.Errorf("networth history: %s", nw.history())
			}

			var ex expenses
			e.get("/users/"+specUser+"/expenses?begin_on=2016-07-01&end_on=2016-07-31", a, &ex)
			// Debits on cash and card accounts: Dunkin -10 (Diningout),
			// NINTENDO -5 (Entertainment), NONBLANK -5 (untagged).
			if got := ex.String(); got != "Diningout=10.00 Entertainment=5.00 Untagged=5.00" {
				t.Errorf("expenses: %s", got)
			}
		})
	}
}

// Every refusal names its reason, with 401 for credentials and 404 for
// users outside the partner.
func TestAuthRejections(t *testing.T) {
	e := newEnv(t)
	iat := clock.Add(-time.Minute).Unix()
	claims := func(change func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": "demo", "sub": specUser, "aud": demoDomain, "iat": iat, "exp": iat + 3600}
		if change != nil {
			change(c)
		}
		return c
	}
	hs256 := func(change func(jwt.MapClaims)) auth {
		return bearer(token(t, jwt.SigningMethodHS256, []byte(demoKey), claims(change)))
	}
	none := token(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil))
	hs384 := token(t, jwt.SigningMethodHS384, []byte(demoKey), claims(nil))
	accounts := "/users/" + specUser + "/accounts"
	cases := []struct {
		name   string
		path   string
		auth   auth
		status int
		says   string
	}{
		{"no credentials", accounts, nil, 401, "credentials required"},
		{"wrong key", accounts, basic("not-a-key-0123456789"), 401, "invalid API key"},
		{"alg none", accounts, bearer(none), 401, "signing method none is invalid"},
		{"alg HS384", accounts, bearer(hs384), 401, "signing method HS384 is invalid"},
		{"wrong signing key", accounts, bearer(token(t, jwt.SigningMethodHS256, []byte(otherKey), claims(nil))), 401, "signature"},
		{"expired", accounts, hs256(func(c jwt.MapClaims) { c["iat"] = iat - 7200; c["exp"] = iat - 3600 }), 401, "expired"},
		{"expired past the leeway", accounts, hs256(func(c jwt.MapClaims) { c["iat"] = iat - 3600; c["exp"] = clock.Unix() - 61 }), 401, "expired"},
		{"exp - iat over 24h", accounts, hs256(func(c jwt.MapClaims) { c["exp"] = iat + 24*3600 + 1 }), 401, "more than 24 hours after iat"},
		{"iat over 24h ago", accounts, hs256(func(c jwt.MapClaims) { c["iat"] = clock.Unix() - 24*3600 - 120 }), 401, "iat is more than 24 hours ago"},
		{"iat in the future", accounts, hs256(func(c jwt.MapClaims) { c["iat"] = clock.Unix() + 120 }), 401, "iat is in the future"},
		{"iat as a string", accounts, hs256(func(c jwt.MapClaims) { c["iat"] = fmt.Sprint(iat) }), 401, "iat"},
		{"no iat", accounts, hs256(func(c jwt.MapClaims) { delete(c, "iat") }), 401, "iat is missing"},
		{"no exp", accounts, hs256(func(c jwt.MapClaims) { delete(c, "exp") }), 401, "exp is missing"},
		{"wrong aud", accounts, hs256(func(c jwt.MapClaims) { c["aud"] = "evil.example" }), 401, "aud"},
		{"no sub", accounts, hs256(func(c jwt.MapClaims) { delete(c, "sub") }), 401, "sub"},
		{"unknown iss", accounts, hs256(func(c jwt.MapClaims) { c["iss"] = "nobody" }), 401, "not a partner"},
		{"a token for another user", "/users/999/accounts", hs256(nil), 401, "cannot reach another user"},
		{"a token on the admin Users section", "/users", hs256(nil), 401, "a JWT cannot call it"},
		{"a token on another user's record", "/users/" + specUser, hs256(nil), 401, "a JWT cannot call it"},
		{"another partner's key", accounts, basic(otherKey), 404, "no user"},
		{"another partner's token", accounts, bearer(token(t, jwt.SigningMethodHS256, []byte(otherKey), jwt.MapClaims{
			"iss": "other", "sub": specUser, "aud": "pfm.other.example", "iat": iat, "exp": iat + 3600})), 404, "no user"},
		{"a user of another partner", "/users/999/accounts", basic(demoKey), 404, "no user"},
		{"users/current with the key", "/users/current", basic(demoKey), 404, "no current user"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.wantError("GET", c.path, c.auth, "", c.status, c.says)
		})
	}
	// Within the leeway a token is still good.
	var accts struct{ Accounts []account }
	e.get(accounts, hs256(func(c jwt.MapClaims) { c["exp"] = clock.Unix() - 30 }), &accts)
	var other struct{ Accounts []account }
	e.get("/users/999/accounts", basic(otherKey), &other)
	if len(other.Accounts) != 1 {
		t.Errorf("partner other sees its own user: %+v", other)
	}
}

// The spec's example token verifies (signature, claims) but for its
// expiry: at a time within its life it is accepted, today it is refused.
func TestSpecJWTExample(t *testing.T) {
	e := newEnv(t)
	e.now = time.Unix(1467038374+100, 0)
	var pong map[string]string
	e.get("/ping", bearer(specToken), &pong)
	if pong["response"] != "PONG" {
		t.Fatalf("ping: %v", pong)
	}
	e.wantError("GET", "/users/current", bearer(specToken), "", 404, `no user "123"`)
	e.now = time.Now()
	e.wantError("GET", "/ping", bearer(specToken), "", 401, "expired")
}

func TestExpensesThreshold(t *testing.T) {
	e := newEnv(t)
	a := basic(demoKey)
	base := "/users/" + specUser + "/expenses"
	july := "begin_on=2016-07-01&end_on=2016-07-31"
	cases := []struct{ query, want string }{
		// Total 20.00: Diningout 10, Entertainment 5, Untagged 5.
		{july, "Diningout=10.00 Entertainment=5.00 Untagged=5.00"}, // default 80: 15 < 16 lists Untagged too
		{july + "&threshold=100", "Diningout=10.00 Entertainment=5.00 Untagged=5.00"},
		{july + "&threshold=75", "Diningout=10.00 Entertainment=5.00 Other=5.00"},
		{july + "&threshold=50", "Diningout=10.00 Other=10.00"},
		{july + "&threshold=1", "Diningout=10.00 Other=10.00"},
		{july + "&threshold=0", "Other=20.00"},
		{"begin_on=2016-07-08", ""},
		{"", "Diningout=10.00 Entertainment=5.00 Untagged=5.00"}, // 30 days back from 2016-07-20
	}
	for _, c := range cases {
		var ex expenses
		e.get(base+"?"+c.query, a, &ex)
		if got := ex.String(); got != c.want {
			t.Errorf("expenses?%s = %q, want %q", c.query, got, c.want)
		}
	}
	for period, want := range map[string]string{
		"this_month": "Diningout=10.00 Entertainment=5.00 Untagged=5.00", "last_thirty_days": "Diningout=10.00 Entertainment=5.00 Untagged=5.00",
		"last_month": "",
	} {
		var ex expenses
		e.get(base+"/"+period, a, &ex)
		if got := ex.String(); got != want {
			t.Errorf("expenses/%s = %q, want %q", period, got, want)
		}
	}
	e.wantError("GET", base+"?threshold=101", a, "", 422, "threshold")
	e.wantError("GET", base+"?threshold=abc", a, "", 422, "threshold")
	e.wantError("GET", base+"?begin_on=07/01/2016", a, "", 422, "begin_on")
	e.wantError("GET", base+"?begin_on=2016-07-10&end_on=2016-07-01", a, "", 422, "end_on")
}

func TestNetworthHistoryAcrossFiles(t *testing.T) {
	e := newEnv(t)
	// Out of date order, as a partner re-sending a missed day does: the
	// history goes by each snapshot's date, not by when its file came.
	for _, day := range []string{"2016-06-15", "2016-05-31", "2016-08-10", "2016-06-30"} {
		e.ingest("demo", "testdata/networth/"+day+".xml", day)
	}
	e.now = time.Date(2016, 8, 20, 0, 0, 0, 0, time.UTC)
	a := basic(demoKey)
	var nw networth
	e.get("/users/700/networth", a, &nw)
	// June counts its last snapshot (06-30, not 06-15); July had no file
	// and keeps June's balances.
	want := "2016-05:1000.0/200.0/800.0/0.0 2016-06:1200.0/100.0/1100.0/300.0 2016-07:1200.0/100.0/1100.0/0.0 2016-08:2000.0/0.0/2000.0/900.0"
	if got := nw.history(); got != want {
		t.Errorf("history:\n got %s\nwant %s", got, want)
	}
	if nw.Meta.NetWorth != "2000.0" || nw.Meta.NetWorthChange != "900.0" || nw.Meta.TotalAssets != "2000.0" || nw.Meta.TotalDebts != "0.0" {
		t.Errorf("meta: %+v", nw.Meta)
	}

	// Manual accounts: created, counted, changed, deleted.
	code, body := e.do("POST", "/users/700/networth/accounts", a, `{"networth_account": {"account_type": "asset", "balance": 500.5, "name": "Coffee Beans"}}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	var created struct {
		NetworthAccounts []struct {
			ID int64 `json:"id"`
		} `json:"networth_accounts"`
	}
	if err := json.Unmarshal(body, &created); err != nil || len(created.NetworthAccounts) != 1 {
		t.Fatalf("create: %s", body)
	}
	id := fmt.Sprint(created.NetworthAccounts[0].ID)
	e.get("/users/700/networth", a, &nw)
	if nw.Meta.NetWorth != "2500.5" || nw.Meta.NetWorthChange != "1400.5" || !nw.Assets[len(nw.Assets)-1].Additional {
		t.Errorf("with a manual asset: %+v %+v", nw.Meta, nw.Assets)
	}
	if code, body := e.do("PUT", "/users/700/networth/accounts/"+id, a, `{"networth_account": {"account_type": "debt", "balance": 1000, "name": "House"}}`); code != 204 {
		t.Fatalf("update: %d %s", code, body)
	}
	e.get("/users/700/networth", a, &nw)
	if nw.Meta.NetWorth != "1000.0" || nw.Meta.TotalDebts != "1000.0" || nw.Debts[len(nw.Debts)-1].Name != "House" {
		t.Errorf("with a manual debt: %+v %+v", nw.Meta, nw.Debts)
	}
	e.wantError("PUT", "/users/"+specUser+"/networth/accounts/"+id, a, `{"networth_account": {"account_type": "debt", "balance": 1, "name": "x"}}`, 404, "no networth account")
	e.wantError("POST", "/users/700/networth/accounts", a, `{"networth_account": {"account_type": "boat", "balance": "lots", "name": ""}}`, 422, "account_type")
	e.wantError("POST", "/users/700/networth/accounts", a, `{"networth_account": {"account_type": "asset", "balance": 1.234, "name": "x"}}`, 422, "balance")
	if code, body := e.do("DELETE", "/users/700/networth/accounts/"+id, a, ""); code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	e.wantError("DELETE", "/users/700/networth/accounts/"+id, a, "", 404, "no networth account")
	e.get("/users/700/networth", a, &nw)
	if nw.Meta.NetWorth != "2000.0" {
		t.Errorf("after delete: %+v", nw.Meta)
	}
}

func TestTransactionsPagingAndSearch(t *testing.T) {
	e := newEnv(t)
	a := basic(demoKey)
	base := "/users/" + specUser
	var page transactionPage
	e.get(base+"/transactions?per_page=4&page=2", a, &page)
	if page.Meta.CurrentPage != 2 || page.Meta.TotalPages != 2 || len(page.Transactions) != 2 {
		t.Errorf("page 2 of 4: meta %+v, %d transactions", page.Meta, len(page.Transactions))
	}
	e.get(base+"/transactions?page=9", a, &page)
	if page.Meta.TotalPages != 1 || len(page.Transactions) != 0 {
		t.Errorf("past the end: meta %+v, %d transactions", page.Meta, len(page.Transactions))
	}
	var accts struct{ Accounts []account }
	e.get(base+"/accounts/all", a, &accts)
	var checking account
	for _, ac := range accts.Accounts {
		if ac.ReferenceID == "0000173112-S0012" {
			checking = ac
		}
	}
	search := func(q string) []string {
		t.Helper()
		var p transactionPage
		e.get(base+"/transactions/search?"+q, a, &p)
		var refs []string
		for _, tx := range p.Transactions {
			refs = append(refs, tx.ReferenceID)
		}
		return refs
	}
	cases := []struct{ query, want string }{
		{"q=nintendo", "62"},
		{"q=DUNKIN", "83"},
		{"q=100%25", ""}, // % is a character, not a wildcard
		{"tags[]=Diningout", "83"},
		{"tags[]=Diningout&tags[]=Entertainment", "62 66 83"}, // 66: STEAMGAMES, a credit
		{"untagged=1", "61 67"},
		{fmt.Sprintf("account_ids=%d", checking.ID), "61 62"},
		{"account_ids=0000173112-S0012&q=nin", "62"},
		{"begin_on=2016-07-08", ""},
		{"begin_on=2016-07-07&end_on=2016-07-07&untagged=0&q=dunkin", "83"},
	}
	for _, c := range cases {
		got := search(c.query)
		slices.Sort(got)
		if strings.Join(got, " ") != c.want {
			t.Errorf("search?%s = %v, want %s", c.query, got, c.want)
		}
	}
	e.get(fmt.Sprintf("%s/accounts/%d/transactions", base, checking.ID), a, &page)
	if len(page.Transactions) != 2 || len(page.Accounts) != 1 || page.Accounts[0].ID != checking.ID {
		t.Errorf("account transactions: %+v", page)
	}
	var one struct{ Accounts []account }
	e.get(base+"/accounts/0000173112-S0012", a, &one)
	if len(one.Accounts) != 1 || one.Accounts[0].ID != checking.ID || one.Accounts[0].Balance != "40.00" {
		t.Errorf("account by reference id: %+v", one)
	}
	e.wantError("GET", base+"/accounts/12345", a, "", 404, "has no account")
	e.wantError("GET", base+"/accounts/12345/transactions", a, "", 404, "has no account")
	e.wantError("GET", base+"/transactions/search?account_ids=nope", a, "", 422, "account_ids")
	e.wantError("GET", base+"/transactions/search?untagged=maybe", a, "", 422, "untagged")
	e.wantError("GET", base+"/transactions?page=0", a, "", 422, "page")
	e.wantError("GET", base+"/transactions?per_page=1000", a, "", 422, "per_page")
	// Found by FuzzReportQueries: the offset overflowed, and a search's paging panicked.
	e.wantError("GET", base+"/transactions/search?q=x&page=9223372036854775807&per_page=100", a, "", 422, "page")
	e.wantError("GET", "/users/nobody/transactions", a, "", 404, "no user")
}

func TestUsersTagsAndPing(t *testing.T) {
	e := newEnv(t)
	e.ingest("demo", "testdata/networth/2016-05-31.xml", "2016-05-31")
	a := basic(demoKey)
	var users struct {
		Meta struct {
			CurrentPage int `json:"current_page"`
			TotalPages  int `json:"total_pages"`
		} `json:"meta"`
		Users []struct {
			ID         string   `json:"id"`
			FirstName  string   `json:"first_name"`
			PostalCode string   `json:"postal_code"`
			CustomTags []string `json:"custom_tags"`
		} `json:"users"`
	}
	e.get("/users?per_page=1&page=2", a, &users)
	if users.Meta.TotalPages != 2 || len(users.Users) != 1 || users.Users[0].ID != "700" || users.Users[0].PostalCode != "06252" {
		t.Errorf("users page 2: %+v", users)
	}
	e.get("/users/"+specUser, a, &users)
	// The combined file names user 322079353 twice; the later record wins.
	if len(users.Users) != 1 || users.Users[0].FirstName != "KOBE" || users.Users[0].CustomTags == nil {
		t.Errorf("user: %+v", users)
	}
	e.get("/users/current", bearer(e.demoToken("700")), &users)
	if len(users.Users) != 1 || users.Users[0].ID != "700" {
		t.Errorf("users/current: %+v", users)
	}
	var tags struct{ Tags []string }
	e.get("/tags", bearer(e.demoToken("700")), &tags)
	if len(tags.Tags) != 16 || tags.Tags[0] != "Clothing" {
		t.Errorf("tags: %v", tags.Tags)
	}
	var pong map[string]string
	e.get("/ping", a, &pong)
	if pong["response"] != "PONG" {
		t.Errorf("ping: %v", pong)
	}
	// A custom tag becomes the user's.
	var page transactionPage
	e.get("/users/700/transactions", a, &page)
	if code, body := e.do("PUT", "/users/700/transactions/"+page.Transactions[0].ID, a, `{"tagging": {"type": "regular", "regular": ["Coffee"]}}`); code != 204 {
		t.Fatalf("tag: %d %s", code, body)
	}
	e.get("/users/700/tags", a, &tags)
	if len(tags.Tags) != 17 || tags.Tags[0] != "Coffee" {
		t.Errorf("user tags: %v", tags.Tags)
	}
	e.wantError("GET", "/users/nobody/tags", a, "", 404, "no user")
	e.wantError("GET", "/users/nobody", a, "", 404, "no user")
}

func TestUpdateTransaction(t *testing.T) {
	e := newEnv(t)
	for _, day := range []string{"2016-05-31", "2016-06-15", "2016-06-30"} {
		e.ingest("demo", "testdata/networth/"+day+".xml", day)
	}
	a := basic(demoKey)
	txns := func() map[string]transaction {
		var p transactionPage
		e.get("/users/700/transactions", a, &p)
		out := map[string]transaction{}
		for _, tx := range p.Transactions {
			out[tx.ReferenceID] = tx
		}
		return out
	}
	before := txns()
	shell := before["3"]
	if shell.Balance != "60.00" || len(shell.Tags) != 1 || shell.Tags[0].Name != "Transportation" {
		t.Fatalf("shell before: %+v", shell)
	}
	// A split by the UUID, read back, and counted in expenses per part.
	if code, body := e.do("PUT", "/users/700/transactions/"+shell.ID, a,
		`{"transaction": {"nickname": "Shell Gas"}, "tagging": {"type": "split", "split": [{"name": "Transportation", "value": 45}, {"name": "Groceries", "value": 15.00}]}}`); code != 204 {
		t.Fatalf("split: %d %s", code, body)
	}
	shell = txns()["3"]
	if shell.Nickname != "Shell Gas" || len(shell.Tags) != 2 || shell.Tags[0].Name != "Transportation" || shell.Tags[0].Balance != "45.00" || shell.Tags[1].Balance != "15.00" {
		t.Errorf("shell after split: %+v", shell)
	}
	var ex expenses
	e.get("/users/700/expenses?begin_on=2016-06-01&end_on=2016-06-30&threshold=100", a, &ex)
	if got := ex.String(); got != "Transportation=45.00 Groceries=15.00 Diningout=5.25" {
		t.Errorf("expenses with a split: %s", got)
	}
	// The edit outlives the file sending the transaction again.
	e.ingest("demo", "testdata/networth/2016-06-30.xml", "2016-06-30")
	if again := txns()["3"]; again.Nickname != "Shell Gas" || len(again.Tags) != 2 {
		t.Errorf("edit lost on re-send: %+v", again)
	}

	// A rule (repeat) by the partner's transaction id: the other Starbucks
	// transaction is re-tagged, and a later file's is tagged on arrival.
	if code, body := e.do("PUT", "/users/700/transactions/1", a,
		`{"transaction": {"nickname": "Coffee Run"}, "tagging": {"type": "regular", "regular": ["Coffee"], "repeat": true}}`); code != 204 {
		t.Fatalf("rule: %d %s", code, body)
	}
	e.ingest("demo", "testdata/networth/2016-08-10.xml", "2016-08-10")
	after := txns()
	for _, ref := range []string{"1", "2", "4"} {
		if tx := after[ref]; tx.Nickname != "Coffee Run" || len(tx.Tags) != 1 || tx.Tags[0].Name != "Coffee" {
			t.Errorf("starbucks %s after the rule: %+v", ref, tx)
		}
	}
	// Untagging leaves the transaction untagged, and searchable as such.
	if code, body := e.do("PUT", "/users/700/transactions/4", a, `{"tagging": {"type": "regular", "regular": []}}`); code != 204 {
		t.Fatalf("untag: %d %s", code, body)
	}
	var p transactionPage
	e.get("/users/700/transactions/search?untagged=1", a, &p)
	if len(p.Transactions) != 1 || p.Transactions[0].ReferenceID != "4" || len(p.Transactions[0].Tags) != 0 {
		t.Errorf("untagged: %+v", p.Transactions)
	}

	put := "/users/700/transactions/" + shell.ID
	for _, c := range []struct{ body, says string }{
		{`{"tagging": {"type": "split", "split": [{"name": "A", "value": 10}, {"name": "B", "value": 10}]}}`, "tags total 20.00, the transaction's amount is 60.00"},
		{`{"tagging": {"type": "split", "split": [{"name": "A", "value": 59.999}, {"name": "B", "value": 0.001}]}}`, "tagging.split[0].value"},
		{`{"tagging": {"type": "split", "split": [{"name": "A", "value": 60}], "repeat": true}}`, "split tags are not supported by rules"},
		{`{"tagging": {"type": "regular", "regular": ["A", "B"]}}`, "tagging.regular: one tag"},
		{`{"tagging": {"type": "weird"}}`, "tagging.type"},
		{`{"tagging": {"type": "regular", "regular": ["A"], "repeat": true, "account": "mine"}}`, "tagging.account"},
		{`{"transaction": {"nickname": "  "}}`, "transaction.nickname"},
		{`{}`, "nothing to change"},
		{`{"transaction": `, "body"},
		{`{"tagging": {"type": "regular"}}`, "tagging.regular: required"},
		{`{"transaction": "Shell"}`, "transaction: a JSON string where an object is expected"},
		{`{"tagging": {"type": "regular", "regular": "Coffee"}}`, "tagging.regular: a JSON string where a list is expected"},
		{`{"tagging": {"type": "regular", "regular": ["A"], "repeat": "yes"}}`, "tagging.repeat: a JSON string where true or false is expected"},
	} {
		out := e.wantError("PUT", put, a, c.body, 422, c.says)
		if out.Error.Message != "Error in transaction" || len(out.Error.Data) == 0 {
			t.Errorf("%s: error body %+v", c.body, out)
		}
	}
	e.wantError("PUT", "/users/700/transactions/no-such", a, `{"transaction": {"nickname": "x"}}`, 404, "no transaction")
	e.wantError("PUT", "/users/"+specUser+"/transactions/"+shell.ID, a, `{"transaction": {"nickname": "x"}}`, 404, "no transaction")
}

// TestErrorShapes: every refusal has the spec's shape, with the status a
// client can act on: 404 only for what does not exist, 405 for a method a
// path does not take, 413 for a body over the limit.
func TestErrorShapes(t *testing.T) {
	e := newEnv(t)
	a := basic(demoKey)
	user := "/users/" + specUser
	cases := []struct {
		name, method, path string
		auth               auth
		body               string
		status             int
		says               string
	}{
		{"no credentials", "GET", user + "/accounts", nil, "", 401, "credentials required"},
		{"no such user", "GET", "/users/nobody/accounts", a, "", 404, `no user "nobody"`},
		{"no such account", "GET", user + "/accounts/12345", a, "", 404, `no account "12345"`},
		{"no such endpoint", "GET", "/nothing/here", a, "", 404, "not an endpoint"},
		{"a method the path does not take", "POST", user + "/accounts", a, "{}", 405, "GET"},
		{"PATCH on a transaction", "PATCH", user + "/transactions/1", a, "{}", 405, "PUT"},
		{"a body over the limit", "PUT", user + "/transactions/1", a, `{"transaction": {"nickname": "` + strings.Repeat("x", 70_000) + `"}}`, 413, "larger than the limit"},
		{"an empty body", "PUT", user + "/transactions/1", a, "", 422, "body: empty"},
		{"a body of the wrong type", "POST", user + "/networth/accounts", a, `{"networth_account": []}`, 422, "networth_account: a JSON array where an object is expected"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.wantError(c.method, c.path, c.auth, c.body, c.status, c.says)
		})
	}
	req, _ := http.NewRequest("POST", e.url+user+"/accounts", nil)
	basic(demoKey)(req)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := res.Header.Get("Allow"); got != "GET" {
		t.Errorf("405 Allow: %q, want GET", got)
	}
	// The scheme's name is case-insensitive.
	tok := e.demoToken(specUser)
	for _, scheme := range []string{"bearer", "BEARER", "Bearer"} {
		var out struct{ Accounts []account }
		e.get(user+"/accounts", func(r *http.Request) { r.Header.Set("Authorization", scheme+" "+tok) }, &out)
		if len(out.Accounts) == 0 {
			t.Errorf("%s: no accounts", scheme)
		}
	}
}

type userOut struct {
	ID         string   `json:"id"`
	Login      *string  `json:"login"`
	FirstName  string   `json:"first_name"`
	LastName   string   `json:"last_name"`
	Email      string   `json:"email"`
	PostalCode string   `json:"postal_code"`
	BirthYear  *int     `json:"birth_year"`
	Sex        *string  `json:"sex"`
	CustomTags []string `json:"custom_tags"`
}

func (u userOut) String() string {
	deref := func(p *string) string {
		if p == nil {
			return "null"
		}
		return *p
	}
	year := "null"
	if u.BirthYear != nil {
		year = fmt.Sprint(*u.BirthYear)
	}
	return fmt.Sprintf("%s login=%s %s %s %s zip=%s born=%s sex=%s tags=%v", u.ID, deref(u.Login), u.FirstName, u.LastName,
		u.Email, u.PostalCode, year, deref(u.Sex), u.CustomTags)
}

func (e *env) user(id string, a auth) userOut {
	e.t.Helper()
	var out struct{ Users []userOut }
	e.get("/users/"+id, a, &out)
	if len(out.Users) != 1 {
		e.t.Fatalf("users/%s: %+v", id, out)
	}
	return out.Users[0]
}

// TestUserWrites: the spec's Users and Current User writes, through the
// pipeline, interleaved with files in both orders.
func TestUserWrites(t *testing.T) {
	e := newEnv(t)
	e.srv.Pipeline = e.pipeline
	a := basic(demoKey)
	create, err := os.ReadFile("testdata/spec/user_create_request.json")
	if err != nil {
		t.Fatal(err)
	}
	code, body := e.do("POST", "/users", a, string(create))
	if code != http.StatusCreated {
		t.Fatalf("POST users: %d %s", code, body)
	}
	for _, p := range sameShape("$", specExample(t, "user_create.json"), decodeNumbers(t, body)) {
		t.Errorf("POST users: %s", p)
	}
	const created = "42 login=bsmith24 B Smith user@example.com zip=06252 born=1980 sex=Male tags=[Coffee Food]"
	if got := e.user("42", a).String(); got != created {
		t.Errorf("created:\n got %s\nwant %s", got, created)
	}
	e.wantError("POST", "/users", a, string(create), 409, `"42" is taken`)
	// A user a file created is taken too.
	e.wantError("POST", "/users", a, strings.Replace(string(create), `"id": "42"`, `"id": "`+specUser+`"`, 1), 409, "is taken")
	// The spec's Update Current User example writes "postal_code": 06252, which is not JSON.
	e.wantError("PUT", "/users/42", a, `{"user": {"postal_code": 06252}}`, 422, "body: not valid JSON at byte 27: invalid character '6'")
	e.wantError("POST", "/users", bearer(e.demoToken("42")), string(create), 401, "a JWT cannot call it")

	// Each invalid parameter is named, at once.
	out := e.wantError("POST", "/users", a, `{"user": {"id": "44", "email": "nope", "last_name": "X", "birth_year": 1700, "sex": "X", "postal_code": "1", "custom_tags": [""]}}`, 422, "user.email")
	for _, param := range []string{"user.first_name", "user.email", "user.birth_year", "user.sex", "user.postal_code", "user.custom_tags[0]"} {
		if !slices.ContainsFunc(out.Error.Data, func(d string) bool { return strings.HasPrefix(d, param+":") }) {
			t.Errorf("422 does not name %s: %v", param, out.Error.Data)
		}
	}
	e.wantError("POST", "/users", a, `{"user": {"email": "a@b.co", "first_name": "A", "last_name": "B"}}`, 422, "user.id")
	e.wantError("POST", "/users", a, `{"users": []}`, 422, "user: required")
	e.wantError("POST", "/users", a, `{"user": {"id": [1]}}`, 422, "user.id: a JSON array where a string is expected")

	// A partial PUT changes what it names; the id as the spec's PUT sends it, a number.
	if code, body := e.do("PUT", "/users/42", a, `{"user": {"id": 42, "first_name": "Bea", "custom_tags": ["Coffee"]}}`); code != 204 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if got := e.user("42", a).String(); got != "42 login=bsmith24 Bea Smith user@example.com zip=06252 born=1980 sex=Male tags=[Coffee]" {
		t.Errorf("after PUT: %s", got)
	}
	e.wantError("PUT", "/users/42", a, `{"user": {"id": "43"}}`, 422, "does not change")
	e.wantError("PUT", "/users/nobody", a, `{"user": {"first_name": "X"}}`, 404, `no user "nobody"`)
	e.wantError("PUT", "/users/42", a, `{"user": {"email": ""}}`, 422, "user.email: email is required")

	// A file's update follows: the fields it carries are the file's, the
	// profile stays; then the API's again.
	e.ingest("demo", "testdata/users/42-from-file.xml", "2016-07-09")
	if got := e.user("42", a).String(); got != "42 login=bsmith24 Beatrice Smith beatrice@example.com zip=06252 born=1980 sex=Male tags=[Coffee]" {
		t.Errorf("after the file: %s", got)
	}
	if code, body := e.do("PUT", "/users/42", a, `{"user": {"last_name": "Smythe", "sex": "female"}}`); code != 204 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if got := e.user("42", a).String(); got != "42 login=bsmith24 Beatrice Smythe beatrice@example.com zip=06252 born=1980 sex=Female tags=[Coffee]" {
		t.Errorf("after the file and a PUT: %s", got)
	}

	// The current user: a JWT's, changed and deleted.
	tok := bearer(e.demoToken("42"))
	if code, body := e.do("PUT", "/users/current", tok, `{"user": {"login": "bea"}}`); code != 204 {
		t.Fatalf("PUT current: %d %s", code, body)
	}
	if got := e.user("42", a); got.Login == nil || *got.Login != "bea" {
		t.Errorf("after PUT current: %s", got)
	}
	e.wantError("PUT", "/users/current", a, `{"user": {"login": "x"}}`, 404, "needs a user's JWT")
	if code, body := e.do("POST", "/users/42/networth/accounts", a, `{"networth_account": {"account_type": "asset", "balance": 10, "name": "Boat"}}`); code != 201 {
		t.Fatalf("networth account: %d %s", code, body)
	}
	if code, body := e.do("DELETE", "/users/current", tok, ""); code != 204 {
		t.Fatalf("DELETE current: %d %s", code, body)
	}
	e.wantError("GET", "/users/42", a, "", 404, `no user "42"`)
	e.wantError("DELETE", "/users/42", a, "", 404, `no user "42"`)
	// Created again, it starts with nothing of the deleted one.
	if code, body := e.do("POST", "/users", a, `{"user": {"id": "42", "email": "n@example.com", "first_name": "N", "last_name": "M"}}`); code != 201 {
		t.Fatalf("POST again: %d %s", code, body)
	}
	if got := e.user("42", a).String(); got != "42 login=null N M n@example.com zip= born=null sex=null tags=[]" {
		t.Errorf("created again: %s", got)
	}
	var manual int
	e.srv.Store.DB().QueryRow("SELECT count(*) FROM networth_accounts WHERE partner_customer_id = '42'").Scan(&manual)
	if manual != 0 {
		t.Errorf("the deleted user's networth accounts: %d left", manual)
	}

	// A file's delete of the user takes the profile too, even when the file
	// creates the user again.
	if code, body := e.do("POST", "/users", a, `{"user": {"id": "43", "email": "c@example.com", "first_name": "C", "last_name": "J", "login": "cj"}}`); code != 201 {
		t.Fatalf("POST 43: %d %s", code, body)
	}
	e.ingest("demo", "testdata/users/43-deleted-and-new.xml", "2016-07-09")
	if got := e.user("43", a).String(); got != "43 login=null Carl Jones carl@example.com zip=20171 born=null sex=null tags=[]" {
		t.Errorf("43 after the file's delete and new: %s", got)
	}

	// DELETE removes the user and everything under it, as a file's Delete does.
	db := e.srv.Store.DB()
	count := func(table string) (n int) {
		t.Helper()
		q := "SELECT count(*) FROM " + table + " WHERE partner_id = 'demo' AND account_id IN (SELECT account_id FROM accounts WHERE partner_id = 'demo' AND partner_customer_id = ?)"
		if table == "accounts" {
			q = "SELECT count(*) FROM accounts WHERE partner_id = 'demo' AND partner_customer_id = ?"
		}
		if err := db.QueryRow(q, specUser).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if count("accounts") == 0 || count("transactions") == 0 || count("balances") == 0 {
		t.Fatal("the spec's user has no accounts, transactions or balances to delete")
	}
	var txnsBefore int
	db.QueryRow("SELECT count(*) FROM transactions").Scan(&txnsBefore)
	if code, body := e.do("DELETE", "/users/"+specUser, a, ""); code != 204 {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	e.wantError("GET", "/users/"+specUser+"/accounts", a, "", 404, "no user")
	var txnsAfter, left int
	db.QueryRow("SELECT count(*) FROM transactions").Scan(&txnsAfter)
	db.QueryRow("SELECT count(*) FROM accounts WHERE partner_id = 'demo' AND partner_customer_id = ?", specUser).Scan(&left)
	if left != 0 || txnsAfter >= txnsBefore {
		t.Errorf("after DELETE: %d accounts left, transactions %d -> %d", left, txnsBefore, txnsAfter)
	}
	var audit int
	db.QueryRow("SELECT count(*) FROM ingests WHERE file = 'api:DELETE user " + specUser + "'").Scan(&audit)
	if audit != 1 {
		t.Errorf("the DELETE's ingest rows: %d, want 1", audit)
	}
}

// TestAccountWrites: the spec's Update Account, Delete Account and Get
// Account Investments, with the FI's files before and after.
func TestAccountWrites(t *testing.T) {
	e := newEnv(t)
	e.srv.Pipeline = e.pipeline
	a := basic(demoKey)
	base := "/users/" + specUser + "/accounts/"
	account := func(ref string) map[string]any {
		t.Helper()
		code, body := e.do("GET", base+ref, a, "")
		if code != 200 {
			t.Fatalf("GET %s: %d %s", ref, code, body)
		}
		out, _ := decodeNumbers(t, body).(map[string]any)
		accts, _ := out["accounts"].([]any)
		if len(accts) != 1 {
			t.Fatalf("GET %s: %s", ref, body)
		}
		return accts[0].(map[string]any)
	}
	show := func(ref string) string {
		ac := account(ref)
		return fmt.Sprintf("%v/%v/%v/%v", ac["name"], ac["account_type"], ac["display_account_type"], ac["balance"])
	}
	const mm = "0000129251-S0011"
	if got := show(mm); got != "SUPER MONEY MARKET/savings/savings/430947.36" {
		t.Fatalf("before: %s", got)
	}
	request, err := os.ReadFile("testdata/spec/account_update_request.json")
	if err != nil {
		t.Fatal(err)
	}
	// By the id the API shows, with the spec's payload; then by the reference id, with a user's JWT.
	id := fmt.Sprint(account(mm)["id"])
	if code, body := e.do("PUT", base+id, a, string(request)); code != 204 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if code, body := e.do("PUT", base+mm, bearer(e.demoToken(specUser)), `{"account": {"display_account_type": "Rainy day"}}`); code != 204 {
		t.Fatalf("PUT display: %d %s", code, body)
	}
	if got := show(mm); got != "Joint Checking/savings/Rainy day/430947.36" {
		t.Errorf("after PUT: %s", got)
	}
	// The FI's re-send keeps the user's name and display type.
	e.ingest("demo", "../fixtures/spec/combined.xml", "2016-07-09")
	if got := show(mm); got != "Joint Checking/savings/Rainy day/430947.36" {
		t.Errorf("after the FI's re-send: %s", got)
	}
	// A type moves the class (a card's balance is its Outstanding, which a
	// savings account has not); the FI's next file sets its own again.
	if code, body := e.do("PUT", base+mm, a, `{"account": {"account_type": "Cards", "name": ""}}`); code != 204 {
		t.Fatalf("PUT type: %d %s", code, body)
	}
	if got := show(mm); got != "SUPER MONEY MARKET/cards/Rainy day/<nil>" {
		t.Errorf("after PUT account_type: %s", got)
	}
	e.ingest("demo", "../fixtures/spec/combined.xml", "2016-07-10")
	if got := show(mm); got != "SUPER MONEY MARKET/savings/Rainy day/430947.36" {
		t.Errorf("after the FI's file: %s", got)
	}
	e.wantError("PUT", base+mm, a, `{"account": {"account_type": "boat"}}`, 422, `account.account_type: "boat" is not one of`)
	e.wantError("PUT", base+mm, a, `{"account": {}}`, 422, "nothing to change")
	e.wantError("PUT", base+mm, a, `{"name": "x"}`, 422, "account: required")
	e.wantError("PUT", base+"nope", a, `{"account": {"name": "x"}}`, 404, `account_id: "nope"`)

	// Investments: the spec's shape for an investment account, a reason for any other.
	const ira = "0000129251-S0028"
	e.wantShape(base+ira+"/investments", a, "investments.json")
	var inv struct {
		OtherBalances []struct{ BalanceType, Balance string } `json:"other_balances"`
	}
	e.get(base+ira+"/investments", a, &inv)
	if len(inv.OtherBalances) != 1 || inv.OtherBalances[0].Balance != "11895.88" {
		t.Errorf("investments: %+v", inv)
	}
	e.wantError("GET", base+mm+"/investments", a, "", 404, "only investment accounts have investments")

	// DELETE takes the account, its balances, transactions and the user's
	// name for it; the FI's next file opens it anew.
	count := func(table string) (n int) {
		t.Helper()
		if err := e.srv.Store.DB().QueryRow("SELECT count(*) FROM "+table+" WHERE partner_id = 'demo' AND account_id = ?", mm).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if count("transactions") == 0 || count("balances") == 0 || count("account_edits") != 1 {
		t.Fatalf("before DELETE: %d transactions, %d balances, %d edits", count("transactions"), count("balances"), count("account_edits"))
	}
	if code, body := e.do("DELETE", base+mm, a, ""); code != 204 {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	e.wantError("GET", base+mm, a, "", 404, "not one of the user's accounts")
	if n := count("transactions") + count("balances") + count("account_edits") + count("accounts"); n != 0 {
		t.Errorf("after DELETE: %d rows of the account left", n)
	}
	e.ingest("demo", "../fixtures/spec/combined.xml", "2016-07-11")
	if got := show(mm); got != "SUPER MONEY MARKET/savings/savings/430947.36" {
		t.Errorf("opened again by a file: %s", got)
	}
}

// TestSearchHoldsEveryMatch: the spec's search has no paging, so without
// page or per_page it answers every match; with them, pages.
func TestSearchHoldsEveryMatch(t *testing.T) {
	e := newEnv(t)
	a := basic(demoKey)
	path := filepath.Join(t.TempDir(), "card-holder.xml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gen.Write(f, gen.Options{Users: 1, Shape: "cards", Seed: 7}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	e.ingest("demo", path, "2016-07-09")
	doc, _ := os.ReadFile(path)
	user := regexp.MustCompile(`<PartnerCustomerId>([^<]+)<`).FindSubmatch(doc)[1]
	var stored int
	if err := e.srv.Store.DB().QueryRow(`SELECT count(*) FROM transactions JOIN accounts USING (partner_id, account_id)
		WHERE partner_id = 'demo' AND partner_customer_id = ? AND hidden IS NOT TRUE`, string(user)).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored <= 100 {
		t.Fatalf("the card holder has %d transactions; the test needs more than a page", stored)
	}
	var all transactionPage
	e.get("/users/"+string(user)+"/transactions/search?untagged=0", a, &all)
	if len(all.Transactions) != stored || all.Meta.TotalPages != 1 {
		t.Errorf("search without paging: %d of %d transactions, meta %+v", len(all.Transactions), stored, all.Meta)
	}
	var paged transactionPage
	e.get("/users/"+string(user)+"/transactions/search?untagged=0&per_page=10&page=2", a, &paged)
	if len(paged.Transactions) != 10 || paged.Meta.CurrentPage != 2 || paged.Meta.TotalPages != (stored+9)/10 ||
		paged.Transactions[0].ID != all.Transactions[10].ID {
		t.Errorf("search page 2 of 10: %d transactions, meta %+v", len(paged.Transactions), paged.Meta)
	}
}
