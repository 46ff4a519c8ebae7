package pull

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flatfiler/flatfiler/fixtures/harvestsim"
	"github.com/flatfiler/flatfiler/intake/harvest"
	"github.com/flatfiler/flatfiler/parse"
	"github.com/flatfiler/flatfiler/pipeline"
	"github.com/flatfiler/flatfiler/warehouse"
)

const testKey = "c70b5dd9ebfb6f51d09d4132b7170c9d20750a7852f00680f65658f0310e810056e6763c34c9a00b0e940076f54495c169fc2302cceb312039271c43469507dc"

// partnerSide is the partner's endpoint in a test: the simulator, with the
// requests it was sent kept, and a hook to spoil its answers.
type partnerSide struct {
	sim *harvestsim.Sim
	srv *httptest.Server
	mu  sync.Mutex
	// bodies are the requests' documents, in order.
	bodies []string
	// spoil, if set, answers instead of the simulator.
	spoil func(w http.ResponseWriter, r *http.Request, answer []byte)
}

func newPartnerSide(t *testing.T) *partnerSide {
	t.Helper()
	key, _ := harvest.ParseKey(testKey)
	sim, err := harvestsim.Open("testdata/partner.xml", key, harvestsim.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	p := &partnerSide{sim: sim}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		p.bodies = append(p.bodies, string(body))
		spoil := p.spoil
		p.mu.Unlock()
		rec := httptest.NewRecorder()
		p.sim.ServeHTTP(rec, &http.Request{Method: r.Method, Body: io.NopCloser(bytes.NewReader(body)), Header: r.Header})
		if spoil != nil {
			spoil(w, r, rec.Body.Bytes())
			return
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *partnerSide) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.bodies)
}

type env struct {
	t     *testing.T
	store *warehouse.Store
	h     *Harvester
	cfg   *harvest.Config
	clock time.Time
}

func newEnv(t *testing.T, p *partnerSide) *env {
	t.Helper()
	ctx := context.Background()
	store, err := warehouse.Open(ctx, filepath.Join(t.TempDir(), "w.duckdb"), warehouse.Options{AccountDirectory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e := &env{t: t, store: store, clock: time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)}
	e.h = &Harvester{
		Pipeline:     &pipeline.Pipeline{Store: store, Metrics: pipeline.NewMetrics(prometheus.NewRegistry())},
		Store:        store,
		AllowPrivate: true,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Now:          func() time.Time { return e.clock },
	}
	retries := 0
	e.cfg = &harvest.Config{URL: p.srv.URL, Key: testKey, Retries: &retries, Timeout: harvest.Duration(2 * time.Second)}
	return e
}

// stored lists the partner's transactions as account/id:memo, sorted.
func (e *env) stored() string {
	e.t.Helper()
	rows, err := e.store.DB().Query(`SELECT account_id || '/' || transaction_id || ':' || memo FROM transactions WHERE partner_id = 'p' ORDER BY 1`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func (e *env) states() string {
	e.t.Helper()
	var s string
	if err := e.store.DB().QueryRow(`SELECT string_agg(account_id || '=' || state, ' ' ORDER BY account_id) FROM accounts WHERE partner_id = 'p'`).Scan(&s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) ingests() (n int) {
	e.t.Helper()
	e.store.DB().QueryRow(`SELECT count(*) FROM ingests`).Scan(&n)
	return n
}

func TestHarvestWindowsAndClosing(t *testing.T) {
	ctx := context.Background()
	p := newPartnerSide(t)
	e := newEnv(t, p)

	// A new user: exactly the last 90 days (t3 is 122 days old, t4 214).
	out, err := e.h.HarvestUser(ctx, "p", e.cfg, "h1", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.stored(); got != "A1/t1:PAYROLL A1/t2:DUNKIN #4 A2/t5:INTEREST" {
		t.Errorf("first harvest stored %s", got)
	}
	if out.Report.Status != pipeline.StatusSuccess || out.Requests != 4 {
		t.Errorf("first harvest: %s, %d requests", out.Report.Status, out.Requests)
	}
	if out.Report.Skipped != 2 {
		t.Errorf("skipped %d transactions, want 2 (t3, t4)", out.Report.Skipped)
	}
	reqs := p.requests()
	if len(reqs) != 4 || !strings.Contains(reqs[0], "<UserList><Users><User><PartnerCustomerId>h1</PartnerCustomerId>") ||
		!strings.Contains(reqs[1], "<AccountList>") || strings.Contains(strings.Join(reqs[2:], ""), "LastTransactionId") ||
		!strings.Contains(reqs[0], `sso_partner_id="p"`) {
		t.Errorf("first harvest's requests: %q", reqs)
	}
	var first string
	e.store.DB().QueryRow(`SELECT first_name || ' ' || zip_code FROM users WHERE partner_customer_id = 'h1'`).Scan(&first)
	if first != "Hana 06252" {
		t.Errorf("user: %q", first)
	}

	// The next day the partner has a new transaction on A1 and no longer
	// lists A2: A1 is asked after t1, A2 is closed with its history kept.
	u, _ := p.sim.User("h1")
	u.Accounts[0].Transactions = append(u.Accounts[0].Transactions, parse.Transaction{
		TransactionID: "t6", AccountID: "A1", TransactionType: "Debit", PostedDate: "2026-12-02", Amount: "3.50", Memo: "COFFEE"})
	u.Accounts = u.Accounts[:1]
	p.sim.Update(u)
	e.clock = e.clock.AddDate(0, 0, 1)
	before := len(p.requests())
	out, err = e.h.HarvestUser(ctx, "p", e.cfg, "h1", "")
	if err != nil {
		t.Fatal(err)
	}
	reqs = p.requests()[before:]
	if len(reqs) != 3 || !strings.Contains(reqs[2], "<TransactionList><AccountId>A1</AccountId><LastTransactionId>t1</LastTransactionId></TransactionList>") {
		t.Errorf("second harvest's requests: %q", reqs)
	}
	if got := e.stored(); got != "A1/t1:PAYROLL A1/t2:DUNKIN #4 A1/t6:COFFEE A2/t5:INTEREST" {
		t.Errorf("second harvest stored %s", got)
	}
	if got := e.states(); got != "A1=open A2=closed" || !slices.Equal(out.Closed, []string{"A2"}) {
		t.Errorf("accounts after A2 left the answer: %s (closed %v)", got, out.Closed)
	}
	accts, _ := e.store.Accounts(ctx, "p", "h1")
	if len(accts) != 2 || accts[1].State != "closed" {
		t.Errorf("the API's accounts: %+v", accts)
	}

	// Half a year on, t2 (2026-10-01) is past 180 days: the partner's
	// change of it is not applied; t6's is.
	e.clock = time.Date(2027, 6, 1, 12, 0, 0, 0, time.UTC)
	u, _ = p.sim.User("h1")
	for i := range u.Accounts[0].Transactions {
		switch u.Accounts[0].Transactions[i].TransactionID {
		case "t2":
			u.Accounts[0].Transactions[i].Memo = "CHANGED OLD"
			u.Accounts[0].Transactions[i].PostedDate = "2027-05-31"
		case "t6":
			u.Accounts[0].Transactions[i].Memo = "CHANGED NEW"
		}
	}
	p.sim.Update(u)
	before = len(p.requests())
	// Asked after t6, the simulator answers what sorts after it: t2, moved.
	if _, err := e.h.HarvestUser(ctx, "p", e.cfg, "h1", ""); err != nil {
		t.Fatal(err)
	}
	if got := e.stored(); got != "A1/t1:PAYROLL A1/t2:DUNKIN #4 A1/t6:COFFEE A2/t5:INTEREST" {
		t.Errorf("after a change of a transaction older than 180 days: %s", got)
	}
	_ = before
}

func TestHarvestFailuresApplyNothing(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name  string
		spoil func(w http.ResponseWriter, r *http.Request, answer []byte)
		want  error
		says  string
	}{
		{"bad signature", func(w http.ResponseWriter, _ *http.Request, a []byte) {
			w.Write(bytes.Replace(a, []byte(`signature="`), []byte(`signature="00`), 1))
		}, harvest.ErrSignature, "signature"},
		{"wrong request_id", func(w http.ResponseWriter, _ *http.Request, a []byte) {
			w.Write(bytes.Replace(a, []byte(`request_id="`), []byte(`request_id="9`), 1))
		}, harvest.ErrRequestID, "request_id"},
		{"malformed XML", func(w http.ResponseWriter, _ *http.Request, a []byte) {
			w.Write(a[:len(a)-5])
		}, harvest.ErrMalformed, "malformed"},
		{"a 500", func(w http.ResponseWriter, _ *http.Request, _ []byte) {
			http.Error(w, "down", http.StatusInternalServerError)
		}, nil, "answered 500"},
		{"timeout", func(w http.ResponseWriter, r *http.Request, _ []byte) {
			<-r.Context().Done() // the harvester gives up first
		}, context.DeadlineExceeded, "deadline"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPartnerSide(t)
			e := newEnv(t, p)
			e.cfg.Timeout = harvest.Duration(300 * time.Millisecond)
			// The accounts answer (the second request) is spoiled.
			n := 0
			p.spoil = func(w http.ResponseWriter, r *http.Request, a []byte) {
				p.mu.Lock()
				n++
				second := n == 2
				p.mu.Unlock()
				if second {
					c.spoil(w, r, a)
					return
				}
				w.Write(a)
			}
			_, err := e.h.HarvestUser(ctx, "p", e.cfg, "h1", "")
			var re *RequestError
			if !errors.As(err, &re) || re.What != "accounts of user h1" || !strings.Contains(err.Error(), c.says) ||
				(c.want != nil && !errors.Is(err, c.want)) {
				t.Fatalf("error %v, want a RequestError about the accounts of h1 saying %q", err, c.says)
			}
			if e.ingests() != 0 || e.stored() != "" {
				t.Errorf("applied after a failed request: %d ingests, %q", e.ingests(), e.stored())
			}
		})
	}
}

func TestHarvestRetriesA5xx(t *testing.T) {
	p := newPartnerSide(t)
	e := newEnv(t, p)
	retries := 1
	e.cfg.Retries = &retries
	failed := false
	p.spoil = func(w http.ResponseWriter, _ *http.Request, a []byte) {
		p.mu.Lock()
		first := !failed
		failed = true
		p.mu.Unlock()
		if first {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Write(a)
	}
	if _, err := e.h.HarvestUser(context.Background(), "p", e.cfg, "h1", ""); err != nil {
		t.Fatalf("a 503 then an answer: %v", err)
	}
	if got := e.stored(); got != "A1/t1:PAYROLL A1/t2:DUNKIN #4 A2/t5:INTEREST" {
		t.Errorf("stored %s", got)
	}
}

func TestPrivateEndpointsRefused(t *testing.T) {
	p := newPartnerSide(t)
	e := newEnv(t, p)
	e.h.AllowPrivate = false
	_, err := e.h.HarvestUser(context.Background(), "p", e.cfg, "h1", "")
	if !errors.Is(err, errPrivate) {
		t.Fatalf("a loopback endpoint without --harvest-allow-private: %v", err)
	}
}
