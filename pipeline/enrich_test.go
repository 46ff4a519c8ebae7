package pipeline

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flatfiler/flatfiler/stages/enrich"
)

func txnDoc(rows ...string) string {
	var b strings.Builder
	b.WriteString("<Transactions>")
	for _, r := range rows {
		f := strings.Split(r, "|") // id|account|posted|amount|memo
		typ := "Debit"
		if !strings.HasPrefix(f[3], "-") {
			typ = "Credit"
		}
		fmt.Fprintf(&b, `<Transaction><TransactionId>%s</TransactionId><AccountId>%s</AccountId><TransactionType>%s</TransactionType>
<PostedDate>%s</PostedDate><Amount>%s</Amount><Memo>%s</Memo></Transaction>`, f[0], f[1], typ, f[2], f[3], f[4])
	}
	b.WriteString("</Transactions>")
	return b.String()
}

type storedTxn struct {
	id, account, user, memo         string
	cents                           int64
	posted                          time.Time
	nickname, tag, reason, merchant string
}

func (h *harness) transactions() map[string]storedTxn {
	h.t.Helper()
	rows, err := h.store.DB().Query(`SELECT t.transaction_id, t.account_id, a.partner_customer_id, t.memo,
		(t.amount * 100)::BIGINT, t.posted_on, coalesce(t.nickname, ''), coalesce(t.tag, ''), coalesce(t.tag_reason, ''),
		coalesce(t.merchant_key, '')
		FROM enriched_transactions t JOIN accounts a USING (partner_id, account_id)`)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]storedTxn{}
	for rows.Next() {
		var s storedTxn
		if err := rows.Scan(&s.id, &s.account, &s.user, &s.memo, &s.cents, &s.posted, &s.nickname, &s.tag, &s.reason, &s.merchant); err != nil {
			h.t.Fatal(err)
		}
		out[s.account+"/"+s.id] = s
	}
	return out
}

// User rules are applied in the warehouse (at commit and when added for any
// date) and by the engine in Go: both must agree on every transaction.
func TestUserRulesInWarehouseMatchEngine(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.ingest(spec+"combined.xml", Options{})
	const user, acctA, acctB = "322079353", "0000129251-S0011", "0000173112-S0000"
	created := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	add := func(r enrich.UserRule, retag bool, want int64) {
		t.Helper()
		r.Partner, r.User, r.MatchKey = "demo", user, "dunkin"
		n, err := h.pipeline.AddUserRule(ctx, r, retag)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("rule %s re-tagged %d transactions, want %d", r.ID, n, want)
		}
	}
	check := func(key, nickname, tag, reason string) {
		t.Helper()
		got := h.transactions()[key]
		if got.nickname != nickname || got.tag != tag || got.reason != reason {
			t.Errorf("%s: got %q [%s] %s, want %q [%s] %s", key, got.nickname, got.tag, got.reason, nickname, tag, reason)
		}
	}
	check(acctA+"/83", "Dunkin Donuts", "Diningout", "dictionary:dunkin")

	// any_date, all accounts: the stored Dunkin transaction is re-tagged.
	add(enrich.UserRule{ID: "r1", Nickname: "Coffee Run", Tag: "Coffee", CreatedAt: created}, true, 1)
	check(acctA+"/83", "Coffee Run", "Coffee", "user-rule:r1")

	// New files get it at commit, on any of the user's accounts.
	h.ingestString(txnDoc("900|"+acctB+"|2026-06-01|-4.50|DUNKIN #3456 Q35 BOSTON MA",
		"901|"+acctA+"|2026-06-01|-5.10|STARBUCKS STORE 0042"), Options{})
	check(acctB+"/900", "Coffee Run", "Coffee", "user-rule:r1")
	check(acctA+"/901", "Starbucks", "Diningout", "dictionary:starbucks")

	// A rule on one account outranks the rule on all accounts.
	add(enrich.UserRule{ID: "r2", Account: acctB, Nickname: "Office Coffee", Tag: "Work", CreatedAt: created.Add(time.Minute)}, true, 1)
	check(acctB+"/900", "Office Coffee", "Work", "user-rule:r2")
	check(acctA+"/83", "Coffee Run", "Coffee", "user-rule:r1")

	// future_date: nothing stored changes; later transactions get it.
	add(enrich.UserRule{ID: "r3", Nickname: "Later", Tag: "Later", CreatedAt: created.Add(time.Hour),
		PostedFrom: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)}, false, 0)
	h.ingestString(txnDoc("902|"+acctA+"|2026-08-01|-3.00|DUNKIN DONUTS 44",
		"903|"+acctA+"|2026-06-15|-3.00|DD DUNKIN 44",
		"904|"+acctB+"|2026-08-01|-3.00|DUNKINDONUTS*1"), Options{})
	check(acctA+"/902", "Later", "Later", "user-rule:r3")
	check(acctA+"/903", "Coffee Run", "Coffee", "user-rule:r1")
	check(acctB+"/904", "Office Coffee", "Work", "user-rule:r2")
	check(acctA+"/83", "Coffee Run", "Coffee", "user-rule:r1")

	// The engine in Go, and one rebuilt from the warehouse after a restart,
	// decide every stored transaction as the warehouse did.
	reloaded, err := LoadEnrichment(ctx, h.store, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, engine := range map[string]*enrich.Engine{"live": h.pipeline.Enrich, "reloaded": reloaded} {
		e := engine.Snapshot().Enricher("demo")
		for key, s := range h.transactions() {
			r := e.Enrich(enrich.Input{Memo: s.memo, Cents: s.cents, User: s.user, Account: s.account, PostedOn: s.posted})
			if r.Nickname != s.nickname || r.Tag != s.tag || r.Reason != s.reason || r.MerchantKey != s.merchant {
				t.Errorf("%s engine, %s %q: got %q [%s] %s %s, warehouse has %q [%s] %s %s", name, key, s.memo,
					r.Nickname, r.Tag, r.Reason, r.MerchantKey, s.nickname, s.tag, s.reason, s.merchant)
			}
		}
	}
}

// With enrichment off, nothing is set: the switch the benchmark uses.
func TestEnrichmentOff(t *testing.T) {
	h := newHarness(t)
	h.pipeline.Enrich = nil
	h.ingest(spec+"combined.xml", Options{})
	if n := h.count("SELECT count(*) FROM transactions WHERE enrichment_id IS NOT NULL"); n != 0 {
		t.Errorf("%d transactions enriched with enrichment off", n)
	}
}

// Transactions decided alike share one enrichments row, across files and
// partners: a file sent again adds no rows, and every id resolves.
func TestEnrichmentsAreShared(t *testing.T) {
	h := newHarness(t)
	h.ingest(spec+"combined.xml", Options{})
	first := h.count("SELECT count(*) FROM enrichments")
	if first == 0 {
		t.Fatal("no enrichments stored")
	}
	h.ingest(spec+"combined.xml", Options{})
	h.ingest(spec+"combined.xml", Options{Partner: "other"})
	if n := h.count("SELECT count(*) FROM enrichments"); n != first {
		t.Errorf("%d enrichments after sending the file again, want %d", n, first)
	}
	if n := h.count(`SELECT count(*) FROM (SELECT nickname, tag, tag_reason, merchant_key FROM enrichments
		GROUP BY ALL HAVING count(*) > 1)`); n != 0 {
		t.Errorf("%d enrichments stored twice", n)
	}
	if n := h.count("SELECT count(*) FROM transactions ANTI JOIN enrichments USING (enrichment_id)"); n != 0 {
		t.Errorf("%d transactions without their enrichment", n)
	}
	if n := h.count("SELECT count(*) FROM enriched_transactions WHERE partner_id = 'other' AND tag_reason IS NULL"); n != 0 {
		t.Errorf("%d of the second partner's transactions not enriched", n)
	}
}
