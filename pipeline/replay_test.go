package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flatfiler/flatfiler/fixtures/gen"
	"github.com/flatfiler/flatfiler/parse"
	"github.com/flatfiler/flatfiler/stages"
)

// The warehouse resolves actions set-based over a whole file. This test holds
// it to the definition: the same records applied one by one in file order, by
// a model written for clarity, give the same warehouse. Files are random
// combined files over a few keys, so keys repeat, users and accounts are
// deleted and re-created, and accounts change owners; two files run in a row
// so that deletes meet stored rows, in batches as small as one row.
func TestActionsMatchReplayOneByOne(t *testing.T) {
	var seen modelStats
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			h := newHarness(t)
			m := newModel()
			defer func() { seen.add(m.stats) }()
			batch := 1 + rng.IntN(20)
			for day := range 2 {
				doc := randomCombined(rng)
				path := filepath.Join(t.TempDir(), "file.xml")
				if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
					t.Fatal(err)
				}
				at := asOf.AddDate(0, 0, day)
				rep := h.ingest(path, Options{AsOf: at, BatchRows: batch, Workers: 1 + rng.IntN(3)})
				if !rep.Applied {
					t.Fatalf("file not applied: %+v", rep)
				}
				m.apply(t, doc, at)
				if got, want := h.canonical(), m.canonical(); got != want {
					t.Fatalf("after file %d (batches of %d rows), warehouse and replay differ:\n%s\nfile:\n%s",
						day+1, batch, diffLines(got, want), doc)
				}
				if got, want := h.accountsByOwner(), m.accountsByOwner(); got != want {
					t.Fatalf("after file %d, the Store's accounts by owner (the API's account directory) and replay differ:\n%s\nfile:\n%s",
						day+1, diffLines(got, want), doc)
				}
				if n := h.count(misplacedKeys); n != 0 {
					t.Fatalf("after file %d: %d accounts, balances or transactions with a missing, shared or wrong account_key or owner_hash", day+1, n)
				}
				if n := h.count(outOfKeyOrder); n != 0 {
					t.Fatalf("after file %d: %d transactions stored before a lower account_key of their file", day+1, n)
				}
			}
		})
	}
	// Files that never hit a case would make this test pass for nothing.
	if seen.userKills == 0 || seen.accountDeletes == 0 || seen.ownerChanges == 0 || seen.replaced == 0 || seen.transactionDeletes == 0 {
		t.Errorf("the random files miss a case: %+v", seen)
	}
}

// Generated files of every shape, each followed by the nightly file after
// it, give the warehouse the one-by-one model gives: the shapes the
// benchmarks measure are applied as the definition says.
func TestGeneratedShapesMatchReplay(t *testing.T) {
	var seen modelStats
	for _, tt := range []struct {
		shape string
		users int
	}{{"mixed", 60}, {"members", 150}, {"cards", 3}} {
		t.Run(tt.shape, func(t *testing.T) {
			h, m := newHarness(t), newModel()
			defer func() { seen.add(m.stats) }()
			first := gen.Options{Users: tt.users, Seed: 11, BadRate: 0.01, Shape: tt.shape}
			night := first
			night.Shape, night.NightOf = gen.Nightly, tt.shape
			for day, opts := range []gen.Options{first, night} {
				var doc strings.Builder
				if _, err := gen.Write(&doc, opts); err != nil {
					t.Fatal(err)
				}
				at := asOf.AddDate(0, 0, day)
				if rep := h.ingestString(doc.String(), Options{AsOf: at, BatchRows: 5000}); !rep.Applied {
					t.Fatalf("%s file not applied: %+v", opts.Shape, rep)
				}
				m.apply(t, doc.String(), at)
				if got, want := h.canonical(), m.canonical(); got != want {
					t.Fatalf("after the %s file, warehouse and replay differ:\n%s", opts.Shape, diffLines(got, want))
				}
			}
		})
	}
	if seen.userKills == 0 || seen.accountDeletes == 0 || seen.transactionDeletes == 0 || seen.replaced == 0 {
		t.Errorf("the nightly files miss a case: %+v", seen)
	}
}

// misplacedKeys counts accounts without a key of their own or their owner's
// hash, and balances and transactions without their account's key.
const misplacedKeys = `SELECT
  (SELECT count(*) FROM accounts WHERE account_key IS NULL) +
  (SELECT count(*) FROM accounts WHERE owner_hash IS DISTINCT FROM md5_number_upper(partner_id || ':' || partner_customer_id)) +
  (SELECT count(*) - count(DISTINCT account_key) FROM accounts) +
  (SELECT count(*) FROM transactions t LEFT JOIN accounts a USING (partner_id, account_id) WHERE t.account_key IS DISTINCT FROM a.account_key) +
  (SELECT count(*) FROM balances b LEFT JOIN accounts a USING (partner_id, account_id) WHERE b.account_key IS DISTINCT FROM a.account_key)`

// outOfKeyOrder counts transactions that lie after a row of their file with
// a higher account_key: each file's rows are stored sorted by key, so that a
// row group spans few accounts. A file's rows share their commit's
// updated_at (the files of this test share a name).
const outOfKeyOrder = `SELECT count(*) FROM (
  SELECT account_key, lag(account_key) OVER (PARTITION BY updated_at ORDER BY rowid) AS previous FROM transactions)
WHERE account_key < previous`

type modelStats struct {
	userKills, accountDeletes, ownerChanges, replaced, transactionDeletes int
}

func (s *modelStats) add(o modelStats) {
	s.userKills += o.userKills
	s.accountDeletes += o.accountDeletes
	s.ownerChanges += o.ownerChanges
	s.replaced += o.replaced
	s.transactionDeletes += o.transactionDeletes
}

// randomCombined writes a combined file over 4 users, 6 accounts and 4
// transaction ids per account.
func randomCombined(rng *rand.Rand) string {
	var b strings.Builder
	b.WriteString("<Users>\n")
	action := func(p int) string {
		switch {
		case rng.IntN(100) < p:
			return "<Action>Delete</Action>"
		case rng.IntN(2) == 0:
			return "<Action>Update</Action>"
		}
		return ""
	}
	types := []string{"checking", "savings", "credit_card"}
	for range 1 + rng.IntN(8) {
		user := fmt.Sprintf("U%d", rng.IntN(4))
		fmt.Fprintf(&b, "<User><Details>%s<PartnerCustomerId>%s</PartnerCustomerId><FirstName>F%d</FirstName>"+
			"<LastName>L</LastName><Email>u@example.com</Email><ZipCode>12345</ZipCode></Details>\n",
			action(20), user, rng.IntN(1000))
		for range rng.IntN(3) {
			account := fmt.Sprintf("A%d", rng.IntN(6))
			typ := types[rng.IntN(len(types))]
			balance := "Current"
			if typ == "credit_card" {
				balance = "Outstanding"
			}
			fmt.Fprintf(&b, `<Account><Details>%s<PartnerCustomerId>%s</PartnerCustomerId><AccountId>%s</AccountId>
<AccountFiName>FI</AccountFiName><AccountType>%s</AccountType><AccountBalances><AccountBalance>
<BalanceType>%s</BalanceType><BalanceAmount>%d.00</BalanceAmount><CurrencyCode>USD</CurrencyCode>
</AccountBalance></AccountBalances></Details>`+"\n", action(15), user, account, typ, balance, rng.IntN(1000))
			for range rng.IntN(4) {
				fmt.Fprintf(&b, `<Transaction>%s<TransactionId>T%d</TransactionId><AccountId>%s</AccountId>
<TransactionType>Credit</TransactionType><PostedDate>2026-01-02</PostedDate><Amount>%d.00</Amount><Memo>M%d</Memo></Transaction>`+"\n",
					action(10), rng.IntN(4), account, rng.IntN(1000), rng.IntN(1000))
			}
			b.WriteString("</Account>\n")
		}
		b.WriteString("</User>\n")
	}
	b.WriteString("</Users>\n")
	return b.String()
}

// model is the warehouse as applying validated records one by one makes it.
type model struct {
	users        map[string]string // customer id -> first name
	accounts     map[string]modelAccount
	balances     map[string]map[time.Time]string // account -> as_of -> "type amount"
	transactions map[[2]string]string            // account, id -> "amount memo"
	stats        modelStats
}

type modelAccount struct{ owner, typ string }

func newModel() *model {
	return &model{users: map[string]string{}, accounts: map[string]modelAccount{},
		balances: map[string]map[time.Time]string{}, transactions: map[[2]string]string{}}
}

func (m *model) apply(t *testing.T, doc string, at time.Time) {
	t.Helper()
	recs, _, err := parse.Collect(context.Background(), strings.NewReader(doc), parse.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v := stages.Validator{}.Validate(recs)
	type event struct {
		seq stages.Seq
		do  func()
	}
	var events []event
	for _, u := range v.Batch.Users {
		events = append(events, event{u.Seq, func() {
			if u.Action == stages.Delete {
				delete(m.users, u.PartnerCustomerID)
				for id, a := range m.accounts {
					if a.owner == u.PartnerCustomerID {
						m.stats.userKills++
						m.kill(id)
					}
				}
				return
			}
			m.users[u.PartnerCustomerID] = u.FirstName
		}})
	}
	for _, a := range v.Batch.Accounts {
		events = append(events, event{a.Seq, func() {
			if a.Action == stages.Delete {
				m.stats.accountDeletes++
				m.kill(a.AccountID)
				return
			}
			if old, ok := m.accounts[a.AccountID]; ok && old.owner != a.PartnerCustomerID {
				m.stats.ownerChanges++
			}
			m.accounts[a.AccountID] = modelAccount{a.PartnerCustomerID, a.AccountType}
			if m.balances[a.AccountID] == nil {
				m.balances[a.AccountID] = map[time.Time]string{}
			}
			bal := a.Balances[0]
			m.balances[a.AccountID][at] = fmt.Sprintf("%s %d", bal.BalanceType, bal.Cents)
		}})
	}
	for _, tx := range v.Batch.Transactions {
		events = append(events, event{tx.Seq, func() {
			key := [2]string{tx.AccountID, tx.TransactionID}
			if _, ok := m.transactions[key]; ok {
				m.stats.replaced++
			}
			if tx.Action == stages.Delete {
				m.stats.transactionDeletes++
				delete(m.transactions, key)
				return
			}
			m.transactions[key] = fmt.Sprintf("%d %s", tx.Cents, tx.Memo)
		}})
	}
	slices.SortFunc(events, func(a, b event) int { return int(a.seq - b.seq) })
	for _, e := range events {
		e.do()
	}
}

// kill removes an account and everything under it.
func (m *model) kill(account string) {
	delete(m.accounts, account)
	delete(m.balances, account)
	for key := range m.transactions {
		if key[0] == account {
			delete(m.transactions, key)
		}
	}
}

func (m *model) canonical() string {
	var lines []string
	for id, name := range m.users {
		lines = append(lines, fmt.Sprintf("user %s %s", id, name))
	}
	for id, a := range m.accounts {
		lines = append(lines, fmt.Sprintf("account %s %s %s", id, a.owner, a.typ))
	}
	for id, snaps := range m.balances {
		for at, bal := range snaps {
			lines = append(lines, fmt.Sprintf("balance %s %s %s", id, at.Format(time.DateOnly), bal))
		}
	}
	for key, tx := range m.transactions {
		lines = append(lines, fmt.Sprintf("transaction %s %s %s", key[0], key[1], tx))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func (h *harness) canonical() string {
	h.t.Helper()
	rows, err := h.store.DB().Query(`
SELECT 'user ' || partner_customer_id || ' ' || first_name FROM users
UNION ALL SELECT 'account ' || account_id || ' ' || partner_customer_id || ' ' || account_type FROM accounts
UNION ALL SELECT 'balance ' || account_id || ' ' || strftime(as_of, '%Y-%m-%d') || ' ' || balance_type || ' ' || (amount * 100)::BIGINT FROM balances
UNION ALL SELECT 'transaction ' || account_id || ' ' || transaction_id || ' ' || (amount * 100)::BIGINT || ' ' || memo FROM transactions`)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			h.t.Fatal(err)
		}
		lines = append(lines, s)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// replayUsers are the customer ids randomCombined uses.
var replayUsers = []string{"U0", "U1", "U2", "U3"}

func (m *model) accountsByOwner() string {
	var lines []string
	for id, a := range m.accounts {
		lines = append(lines, fmt.Sprintf("%s owns %s %s", a.owner, id, a.typ))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// accountsByOwner lists each user's accounts as Store.Accounts gives them.
func (h *harness) accountsByOwner() string {
	h.t.Helper()
	var lines []string
	for _, u := range replayUsers {
		accts, err := h.store.Accounts(context.Background(), "demo", u)
		if err != nil {
			h.t.Fatal(err)
		}
		for _, a := range accts {
			lines = append(lines, fmt.Sprintf("%s owns %s %s", a.Owner, a.ID, a.Type))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// diffLines shows what only one side has.
func diffLines(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var b bytes.Buffer
	for _, l := range g {
		if !slices.Contains(w, l) {
			fmt.Fprintf(&b, "+ warehouse only: %s\n", l)
		}
	}
	for _, l := range w {
		if !slices.Contains(g, l) {
			fmt.Fprintf(&b, "- replay only:    %s\n", l)
		}
	}
	return b.String()
}
