package main

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flatfiler/flatfiler/fixtures/gen"
	"github.com/flatfiler/flatfiler/intake/batches"
	"github.com/flatfiler/flatfiler/parse"
	"github.com/flatfiler/flatfiler/pipeline"
)

// callbackReceiver is a partner's HTTPS endpoint: it fails the first
// failures calls with 503, then takes them.
type callbackReceiver struct {
	*httptest.Server
	caFile string

	mu       sync.Mutex
	failures int
	calls    int
	got      []receivedCallback
	arrived  chan struct{}
}

type receivedCallback struct {
	header http.Header
	body   []byte
}

func newCallbackReceiver(t *testing.T, failures int) *callbackReceiver {
	r := &callbackReceiver{failures: failures, arrived: make(chan struct{}, 16)}
	r.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.calls++
		fail := r.calls <= r.failures
		if !fail {
			r.got = append(r.got, receivedCallback{header: req.Header.Clone(), body: body})
		}
		r.mu.Unlock()
		if fail {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		r.arrived <- struct{}{}
	}))
	t.Cleanup(r.Close)
	r.caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate().Raw})
	if err := os.WriteFile(r.caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *callbackReceiver) wait(t *testing.T) receivedCallback {
	t.Helper()
	select {
	case <-r.arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("no callback arrived")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[len(r.got)-1]
}

func withCallbacks(r *callbackReceiver) func(*serveConfig) {
	return func(c *serveConfig) {
		c.CallbackCA, c.CallbackAllowPrivate = r.caFile, true
		c.CallbackSchedule = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond}
	}
}

func (ts *testServer) putBatch(body []byte, key string, header ...string) apiAnswer {
	ts.t.Helper()
	a, err := ts.tryPutBatch(body, key, header...)
	if err != nil {
		ts.t.Fatal(err)
	}
	return a
}

// tryPutBatch is putBatch for a server that may die before it answers.
func (ts *testServer) tryPutBatch(body []byte, key string, header ...string) (apiAnswer, error) {
	req, _ := http.NewRequest(http.MethodPut, ts.base+"/api/v2/batches", bytes.NewReader(body))
	if key != "" {
		req.SetBasicAuth(key, "")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return send(req)
}

func (ts *testServer) waitBatch(key, id string) map[string]any {
	ts.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		a := ts.call("GET", "/api/v2/batches/"+id, nil, key)
		if a.Status != http.StatusOK {
			ts.t.Fatalf("batch status: %d %s", a.Status, a.Raw)
		}
		if st := a.Body["status"]; st != "new" && st != "processing" {
			return a.Body
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.t.Fatalf("batch %s did not complete", id)
	return nil
}

func specBatch(t *testing.T, name, callback string) []byte {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("../../parse/testdata/batches", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Replace(body, []byte("https://url.to.post.to/"), []byte(callback), 1)
}

// The spec's sample request, end to end: 200 with a batch_id, status
// success, a callback that verifies as a JWT and as a Standard Webhook,
// its content again at /content, and the transaction in the reporting API.
// The sample's tag, Coffee, is not one of the spec's default tags (GET
// /tags; the dictionary tags Dunkin Donuts Diningout) but a user's own
// (GET /users/:id/tags): here the partner's rules give it, as an FI would.
func TestPushBatchSpecSample(t *testing.T) {
	recv := newCallbackReceiver(t, 3) // fails three times, then takes it
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "partners"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "partners", "demo"+pipeline.RulesSuffix), []byte("# coffee is its own tag at this FI\nDUNKINDONUTS\t\tCoffee\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startTestServer(t, dir, withCallbacks(recv))
	key := ts.demo.APIKey
	body := specBatch(t, "spec-sample.json", recv.URL+"/hook")

	put := ts.putBatch(body, key, "Idempotency-Key", "sample-1")
	if put.Status != http.StatusOK {
		t.Fatalf("PUT: %d %s", put.Status, put.Raw)
	}
	id, _ := put.Body["batch_id"].(string)
	if again := ts.putBatch(body, key, "Idempotency-Key", "sample-1"); again.Body["batch_id"] != id {
		t.Fatalf("the same Idempotency-Key gave %s, first %s", again.Raw, id)
	}
	st := ts.waitBatch(key, id)
	if st["status"] != "success" {
		t.Fatalf("status %v", st)
	}
	got := recv.wait(t)

	// The JWT verifies with the partner's key, and binds batch and body.
	var claims batches.CallbackClaims
	raw := strings.TrimPrefix(got.header.Get("Authorization"), "Bearer ")
	if _, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return []byte(key), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer("flatfiler"), jwt.WithAudience("demo.flatfiler.local"),
		jwt.WithIssuedAt(), jwt.WithExpirationRequired()); err != nil {
		t.Fatalf("callback JWT: %v", err)
	}
	sum := sha256.Sum256(got.body)
	if claims.BatchID != id || claims.BodySHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("claims %+v, body sha256 %x", claims, sum)
	}
	// Standard Webhooks: v1,base64(HMAC-SHA256(key, id.timestamp.body)).
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(got.header.Get("webhook-id") + "." + got.header.Get("webhook-timestamp") + "."))
	mac.Write(got.body)
	if want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)); got.header.Get("webhook-signature") != want || got.header.Get("webhook-id") != id {
		t.Errorf("webhook headers %v, want signature %s", got.header, want)
	}

	var content struct {
		Batch struct {
			BatchID string `json:"batch_id"`
			Status  string `json:"status"`
		} `json:"batch"`
		Users []struct {
			UserID   string `json:"user_id"`
			Accounts []struct {
				AccountID    string `json:"account_id"`
				Name         string `json:"name"`
				Transactions []struct {
					TransactionID   string `json:"transaction_id"`
					Balance         string `json:"balance"`
					PostedAt        string `json:"posted_at"`
					TransactionType string `json:"transaction_type"`
					OriginalName    string `json:"original_name"`
					Nickname        string `json:"nickname"`
					Tags            []struct {
						Name    string  `json:"name"`
						Balance float64 `json:"balance"`
					} `json:"tags"`
				} `json:"transactions"`
			} `json:"accounts"`
		} `json:"users"`
	}
	if err := json.Unmarshal(got.body, &content); err != nil {
		t.Fatalf("callback body: %v\n%s", err, got.body)
	}
	if content.Batch.BatchID != id || content.Batch.Status != "success" || len(content.Users) != 1 || content.Users[0].UserID != "1234" {
		t.Fatalf("content %s", got.body)
	}
	a := content.Users[0].Accounts[0]
	tx := a.Transactions[0]
	if a.Name != "Savings" || tx.Balance != "-112.03" || tx.PostedAt != "2009-03-19T11:40:50-04:00" || tx.TransactionType != "Debit" ||
		tx.OriginalName != "DUNKINDONUTS*100094" || tx.Nickname != "Dunkin Donuts" || len(tx.Tags) != 1 || tx.Tags[0].Name != "Coffee" || tx.Tags[0].Balance != 112.03 {
		t.Errorf("content %s", got.body)
	}
	recv.mu.Lock()
	if recv.calls != 4 {
		t.Errorf("%d callback attempts, want 4 (three refused)", recv.calls)
	}
	recv.mu.Unlock()
	// The receiver answered before the server recorded it: wait for the record.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st := ts.call("GET", "/api/v2/batches/"+id, nil, key)
		if strings.Contains(st.Raw, `"state": "delivered"`) && strings.Contains(st.Raw, `"attempts": 4`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after delivery: %s", st.Raw)
		}
	}
	if c := ts.call("GET", "/api/v2/batches/"+id+"/content", nil, key); c.Raw != string(got.body) {
		t.Errorf("content differs from the callback:\n%s\n%s", c.Raw, got.body)
	}
	list := ts.call("GET", "/api/v2/users/1234/transactions", nil, key)
	if !strings.Contains(list.Raw, `"id": "`+tx.TransactionID+`"`) || !strings.Contains(list.Raw, `"nickname": "Dunkin Donuts"`) {
		t.Errorf("reporting API: %s", list.Raw)
	}
}

// Refusals name what is wrong: nothing, malformed JSON, JSON that is not a
// batch, credentials, size; another partner's batch does not exist.
func TestPushBatchRefusals(t *testing.T) {
	ts := startTestServer(t, t.TempDir(), func(c *serveConfig) { c.MaxBatchSize = 4096; c.CallbackAllowPrivate = true })
	key := ts.demo.APIKey
	big := `{"users": [{"partner_customer_id": "` + strings.Repeat("x", 5000) + `"}]}`
	for _, c := range []struct {
		name, body, key string
		status          int
		says            string
	}{
		{"empty", "", key, 400, "no batch content"},
		{"no users", `{"callback": "https://example.com/"}`, key, 400, "no batch content"},
		{"malformed", "{\"users\": [\n{\"partner_customer_id\": 1 2}]}", key, 400, "byte 38"},
		{"not a batch", `[1, 2]`, key, 422, "the body is an array"},
		{"plain http callback", `{"callback": "http://example.com/", "users": [{}]}`, key, 422, "https only"},
		{"bad key", `{"users": [{}]}`, "nope", 401, "invalid API key"},
		{"too large", big, key, 413, "the limit is 4096"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := ts.putBatch([]byte(c.body), c.key)
			if a.Status != c.status || !strings.Contains(a.Raw, c.says) {
				t.Fatalf("got %d %s, want %d saying %q", a.Status, a.Raw, c.status, c.says)
			}
		})
	}
	if a := ts.call("GET", "/api/v2/batches/0190d2b2-0000-7000-8000-000000000000", nil, key); a.Status != 404 {
		t.Errorf("unknown batch: %d %s", a.Status, a.Raw)
	}
}

// A batch with a located error is applied in part; the 000 draft's
// spellings are read.
func TestPushBatchPartialSuccessAndDraft(t *testing.T) {
	ts := startTestServer(t, t.TempDir())
	key := ts.demo.APIKey
	body := `{"users": [{"partner_customer_id": "u1", "first_name": "A", "last_name": "B", "email": "a@b.co",
  "accounts": [{"reference_id": "acc1", "account_type": "checking", "account_balances": [{"balance_type": "Current", "balance_amount": "10.00"}],
    "transactions": [
      {"reference_id": "t1", "balance": "-5.00", "posted_at": "2024-01-02", "memo": "STARBUCKS 123", "nickname": "Morning coffee"},
      {"reference_id": "t2", "balance": "5.00", "memo": "X"},
      {"reference_id": "t3", "balance": "5.00", "posted_at": "2024-01-02", "transaction_type": "debit", "memo": "Y"},
      {"reference_id": "t4", "balance": "-1.00", "posted_at": "2024-01-03", "memo": "HIDDEN", "hide": true}]}]}]}`
	put := ts.putBatch([]byte(body), key)
	if put.Status != 200 {
		t.Fatalf("PUT: %d %s", put.Status, put.Raw)
	}
	st := ts.waitBatch(key, put.Body["batch_id"].(string))
	raw, _ := json.Marshal(st)
	if st["status"] != "partial-success" || !strings.Contains(string(raw), `"message":"posted_at is required (users[0].accounts[0].transactions[1])"`) ||
		!strings.Contains(string(raw), "transaction_type is debit but balance 5.00 is positive") {
		t.Fatalf("status %s", raw)
	}
	list := ts.call("GET", "/api/v2/users/u1/transactions", nil, key)
	if !strings.Contains(list.Raw, `"nickname": "Morning coffee"`) || strings.Contains(list.Raw, "HIDDEN") {
		t.Errorf("transactions: %s", list.Raw)
	}
	if q := ts.query("SELECT count(*) FROM enriched_transactions WHERE hidden"); !strings.Contains(q, "1") {
		t.Errorf("analysts see hidden transactions flagged: %s", q)
	}

	draft := ts.putBatch(specBatch(t, "draft-sample.json", ""), key)
	if draft.Status != 200 {
		t.Fatalf("draft PUT: %d %s", draft.Status, draft.Raw)
	}
	if st := ts.waitBatch(key, draft.Body["batch_id"].(string)); st["status"] != "success" {
		t.Fatalf("draft: %v", st)
	}
	// A draft-spelled error names the draft's field, as sent.
	bad := bytes.Replace(specBatch(t, "draft-sample.json", ""), []byte(`"posted_date": "2009-03-19T11:40:50-04:00"`), []byte(`"posted_date": "03/19/2009"`), 1)
	draft = ts.putBatch(bad, key)
	st = ts.waitBatch(key, draft.Body["batch_id"].(string))
	raw, _ = json.Marshal(st)
	if st["status"] != "partial-success" || !strings.Contains(string(raw), `posted_date \"03/19/2009\": want YYYY-MM-DD`) {
		t.Errorf("draft with a bad posted_date: %s", raw)
	}
}

// A user's JWT pushes only that user's data: a batch naming another user
// is refused whole, naming it; its own batch is applied, and only it sees it.
func TestPushBatchUserJWT(t *testing.T) {
	ts := startTestServer(t, t.TempDir())
	key := ts.demo.APIKey
	now := time.Now()
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Issuer: "demo", Subject: "1234",
		Audience: jwt.ClaimStrings{"demo.flatfiler.local"}, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	put := func(body string) apiAnswer {
		req, _ := http.NewRequest(http.MethodPut, ts.base+"/api/v2/batches", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		a := apiAnswer{Status: resp.StatusCode, Raw: string(raw)}
		_ = json.Unmarshal(raw, &a.Body)
		return a
	}
	user := func(id string) string {
		return `{"partner_customer_id": "` + id + `", "first_name": "A", "last_name": "B", "email": "a@b.co"}`
	}
	if a := put(`{"users": [` + user("1234") + `, ` + user("999") + `]}`); a.Status != http.StatusForbidden || !strings.Contains(a.Raw, `\"999\"`) {
		t.Fatalf("another user's data: %d %s", a.Status, a.Raw)
	}
	if n := ts.query("SELECT count(*) FROM users"); !strings.Contains(n, "0") {
		t.Fatalf("a refused batch left users: %s", n)
	}
	a := put(`{"users": [` + user("1234") + `]}`)
	if a.Status != http.StatusOK {
		t.Fatalf("own data: %d %s", a.Status, a.Raw)
	}
	id := a.Body["batch_id"].(string)
	if st := ts.waitBatch(key, id); st["status"] != "success" {
		t.Fatalf("status %v", st)
	}
	other, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Issuer: "demo", Subject: "555",
		Audience: jwt.ClaimStrings{"demo.flatfiler.local"}, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}).SignedString([]byte(key))
	req, _ := http.NewRequest(http.MethodGet, ts.base+"/api/v2/batches/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+other)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("another user's JWT read the batch: %d", resp.StatusCode)
	}
}

// A user larger than a record may be (parse.DefaultLimits.MaxRecordBytes
// of JSON) is refused with the batch, naming the user and the limit: the
// decoder's memory follows the largest user, so the bound is what keeps
// it flat.
func TestPushBatchUserOverRecordLimit(t *testing.T) {
	ts := startTestServer(t, t.TempDir())
	var b strings.Builder
	b.WriteString(`{"users": [{"partner_customer_id": "small", "first_name": "A", "last_name": "B", "email": "a@example.com"},
{"partner_customer_id": "huge", "first_name": "A", "last_name": "B", "email": "h@example.com", "accounts": [{"reference_id": "1", "name": "Checking", "account_type": "checking",
"account_balances": [{"balance_type": "current", "balance_amount": "1.00"}], "transactions": [`)
	for i := 0; b.Len() < parse.DefaultLimits.MaxRecordBytes+4096; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"reference_id": "%d", "balance": "-1.00", "posted_at": "2026-11-01", "memo": "DUNKIN #%d BOSTON MA"}`, i, i)
	}
	b.WriteString("]}]}]}")
	a := ts.putBatch([]byte(b.String()), ts.demo.APIKey)
	if a.Status != http.StatusRequestEntityTooLarge || !strings.Contains(a.Raw, "users[1]") || !strings.Contains(a.Raw, "16 MiB") {
		t.Errorf("got %d %s, want 413 naming users[1] and the 16 MiB limit", a.Status, a.Raw)
	}
}

// TestCallbackReceiverWalkthrough walks README's push example: the
// partner's receiver (cmd/callback-receiver, its own certificate, the
// key), the server trusting that certificate, the spec's sample PUT, and
// the receiver verifying the callback's JWT and webhook-signature.
func TestCallbackReceiverWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the receiver")
	}
	work := t.TempDir()
	bin := filepath.Join(work, "callback-receiver")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/flatfiler/flatfiler/cmd/callback-receiver").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	caFile := filepath.Join(work, "receiver-ca.pem")
	dir := t.TempDir()
	// The demo partner's key is made at the server's first start: make it
	// first, as README's first make run does.
	key := "walkthrough-key-0123456789abcdef"
	if code, _, errOut := runCLI(t, "partner", "add", "demo", "--data", dir, "--domain", "demo.flatfiler.local", "--api-key", key); code != 0 {
		t.Fatalf("partner add: %s", errOut)
	}
	recv := exec.Command(bin, "--addr", "127.0.0.1:0", "--key", key, "--ca-out", caFile)
	stdout, err := recv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = recv.Process.Kill(); _ = recv.Wait() })
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(prefix string) string {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the receiver ended before printing %q", prefix)
				}
				if strings.HasPrefix(l, prefix) || strings.HasPrefix(l, "refused") {
					return l
				}
			case <-timeout:
				t.Fatalf("the receiver did not print %q", prefix)
			}
		}
	}
	url := strings.Fields(next("callback URL"))[2]

	ts := startTestServer(t, dir, func(c *serveConfig) { c.CallbackCA, c.CallbackAllowPrivate = caFile, true })
	a := ts.putBatch(specBatch(t, "spec-sample.json", url), key)
	id, _ := a.Body["batch_id"].(string)
	if a.Status != http.StatusOK || id == "" {
		t.Fatalf("PUT: %d %s", a.Status, a.Raw)
	}
	if got := next("verified"); !strings.HasPrefix(got, "verified batch "+id+" ") {
		t.Fatalf("receiver: %s, want batch %s verified", got, id)
	}
}

// A batch as other tools write one applies whole: a byte order mark, CRLF
// and tabs, numbers for ids and amounts, capitalised closed-list values,
// hide as a string, a transaction without a memo (optional in the spec;
// it once failed the whole commit on transactions.memo NOT NULL), an
// escaped name.
func TestPushBatchVariedShapes(t *testing.T) {
	ts := startTestServer(t, t.TempDir())
	key := ts.demo.APIKey
	a := ts.putBatch(specBatch(t, "varied.json", ""), key)
	id, _ := a.Body["batch_id"].(string)
	if a.Status != http.StatusOK || id == "" {
		t.Fatalf("PUT: %d %s", a.Status, a.Raw)
	}
	if st := ts.waitBatch(key, id); st["status"] != "success" {
		t.Fatalf("status %v", st)
	}
	list := ts.call("GET", "/api/v2/users/42/transactions", nil, key)
	if list.Status != http.StatusOK || !strings.Contains(list.Raw, `"balance": 5.00`) || strings.Contains(list.Raw, "-112.03") {
		t.Errorf("transactions (t1 hidden, t2 without a memo shown): %s", list.Raw)
	}
	// A JSON number keeps no trailing zero: -4.5 is the amount -4.50, a
	// debit the API lists as 4.50.
	if !strings.Contains(list.Raw, `"reference_id": "t3"`) || !strings.Contains(list.Raw, `"balance": 4.50`) {
		t.Errorf("transactions (t3 sent as the number -4.5): %s", list.Raw)
	}
	if u := ts.call("GET", "/api/v2/users/42", nil, key); !strings.Contains(u.Raw, "Renée") {
		t.Errorf("user: %s", u.Raw)
	}
	// Without a callback the content is still built, and readable: it is
	// built just after the batch is final, 404 until then.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c := ts.call("GET", "/api/v2/batches/"+id+"/content", nil, key)
		if c.Status == http.StatusOK && strings.Contains(c.Raw, `"reference_id":"t2"`) {
			break
		}
		if c.Status != http.StatusNotFound || time.Now().After(deadline) {
			t.Fatalf("content: %d %s", c.Status, c.Raw)
		}
	}
}

// The content of a batch of many users (groups of them are looked up in
// parallel) lists them as the batch sent them, each with all its
// transactions.
func TestPushBatchContentKeepsOrder(t *testing.T) {
	recv := newCallbackReceiver(t, 0)
	ts := startTestServer(t, t.TempDir(), withCallbacks(recv))
	var body bytes.Buffer
	if _, err := gen.Write(&body, gen.Options{Users: 700, Seed: 21, Batch: true, Callback: recv.URL + "/cb"}); err != nil {
		t.Fatal(err)
	}
	type user struct {
		ID       string `json:"partner_customer_id"`
		Accounts []struct {
			Type         string            `json:"account_type"`
			Transactions []json.RawMessage `json:"transactions"`
		} `json:"accounts"`
	}
	var sent struct{ Users []user }
	if err := json.Unmarshal(body.Bytes(), &sent); err != nil {
		t.Fatal(err)
	}
	a := ts.putBatch(body.Bytes(), ts.demo.APIKey)
	if a.Status != http.StatusOK {
		t.Fatalf("PUT: %d %s", a.Status, a.Raw)
	}
	var got struct{ Users []user }
	if err := json.Unmarshal(recv.wait(t).body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Users) != len(sent.Users) {
		t.Fatalf("%d users in the content, %d sent", len(got.Users), len(sent.Users))
	}
	for i := range sent.Users {
		// An investment account's transactions are not stored (the spec's
		// reporting has none): the content has the account without them.
		n := func(u user) (n int) {
			for _, a := range u.Accounts {
				if a.Type != "investment" {
					n += len(a.Transactions)
				}
			}
			return n
		}
		if got.Users[i].ID != sent.Users[i].ID || n(got.Users[i]) != n(sent.Users[i]) {
			t.Fatalf("content user %d: %s with %d transactions, sent %s with %d", i, got.Users[i].ID, n(got.Users[i]), sent.Users[i].ID, n(sent.Users[i]))
		}
	}
}
