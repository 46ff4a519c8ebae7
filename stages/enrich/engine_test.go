package enrich

import (
	"strings"
	"testing"
	"time"
)

func defaultSnapshot(t testing.TB) *Snapshot {
	t.Helper()
	d, err := DefaultDictionary()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Build(d, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDefaultDictionaryBuilds(t *testing.T) {
	d, err := DefaultDictionary()
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Merchants) < 500 {
		t.Fatalf("dictionary has %d merchants, want at least 500", len(d.Merchants))
	}
	tags := map[string]bool{}
	for _, m := range d.Merchants {
		tags[m.DebitTag], tags[m.CreditTag] = true, true
	}
	for _, tag := range DefaultTags {
		if !tags[tag] && tag != "Fees" { // fees come from keyword rules
			t.Errorf("no merchant carries default tag %s", tag)
		}
	}
}

// The spec's callbacks: DUNKINDONUTS*100094 -> Dunkin Donuts; GAMESTOP ...
// -> GameStop, Entertainment.
func TestEnrich(t *testing.T) {
	e := defaultSnapshot(t).Enricher("demo")
	for _, c := range []struct {
		memo          string
		cents         int64
		nickname, tag string
		reason, check string
	}{
		{"DUNKINDONUTS*100094", -11203, "Dunkin Donuts", "Diningout", "dictionary:dunkin", ""},
		{"GAMESTOP 14 MAIN ST 123 123 2223123 23", -1269, "GameStop", "Entertainment", "dictionary:gamestop", ""},
		{"SQ *BLUE BOTTLE COFFEE Oakland CA", -550, "Blue Bottle Coffee", "Diningout", "dictionary:blue-bottle", ""},
		{"PAYPAL *NETFLIX 4029357733 CA", -1599, "Netflix", "Entertainment", "dictionary:netflix", ""},
		{"WAL-MART #1234 HOUSTON TX", -4200, "Walmart", "Groceries", "dictionary:walmart", ""},
		{"DELTA DENTAL OF CA", -4200, "Delta Dental", "Health", "dictionary:delta-dental", ""},
		{"DELTA AIR LINES 0062345678901", -38820, "Delta Air Lines", "Travel", "dictionary:delta", ""},
		{"ADP WAGE PAY DES:WAGE PAY ID:123", 210000, "ADP", "Income", "dictionary:adp", ""},
		{"ADP PAYROLL FEES", -9900, "ADP", "Fees", "keyword:fee", ""}, // no debit tag: keywords decide
		{"PURCHASE AUTHORIZED ON 03/12 JOE'S PIZZA BROOKLYN NY S381071234567890 CARD 1234", -2350, "Joe's Pizza", "", "unmatched", ""},
		{"ACME CORP DES:PAYROLL ID:XXXXX1234 INDN:DOE JOHN CO ID:XXXXX PPD", 250000, "Acme Corp", "Income", "keyword:payroll", ""},
		{"ACME CORP DES:PAYROLL ID:XXXXX1234", -250000, "Acme Corp", "", "unmatched", ""}, // payroll paid out is not income
		{"ATM WITHDRAWAL 123 MAIN ST ANYTOWN NY", -20000, "ATM Withdrawal", "Fees", "keyword:atm", ""},
		{"ONLINE TRANSFER TO SAV XXXXXX1234", -50000, "Online Transfer To Sav", "Transfer", "keyword:transfer", ""},
		{"PAYMENT THANK YOU", 50000, "Payment Thank You", "Payment", "keyword:payment", ""},
		{"INTEREST PAYMENT", 312, "Interest Payment", "Income", "keyword:interest", ""},
		{"CHECK 1021", -15000, "Check 1021", "", "check", "1021"},
		{"Check 00 0 Disbursed 10.00", -1000, "Check", "", "check", ""},
		{"TST* BRICK OVEN BISTRO - DOWNTOWN", -7135, "Brick Oven Bistro", "", "unmatched", ""},
		{"SHELLY'S SALON AUSTIN TX", -4500, "Shelly's Salon", "", "unmatched", ""},
	} {
		r := e.Enrich(Input{Memo: c.memo, Cents: c.cents})
		if source, _, _ := strings.Cut(r.Reason, ":"); r.Source.String() != source {
			t.Errorf("%q: source %s, but reason %s", c.memo, r.Source, r.Reason)
		}
		if r.Nickname != c.nickname || r.Tag != c.tag || r.Reason != c.reason || r.CheckNumber != c.check {
			t.Errorf("%q: got %q [%s] %s check %q, want %q [%s] %s check %q", c.memo,
				r.Nickname, r.Tag, r.Reason, r.CheckNumber, c.nickname, c.tag, c.reason, c.check)
		}
	}
}

// First match wins: user rule on this account > user rule on all accounts >
// partner rule > dictionary > keywords.
func TestPrecedence(t *testing.T) {
	d, err := DefaultDictionary()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := ParsePartnerRules(strings.NewReader(
		"# coffee is its own tag at this FI\nDUNKIN\t\tCoffee\nSTARBUCKS\tStarbucks Coffee\tCoffee\tdebit\n"), "demo.tsv")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := NewEngine(d)
	if err != nil {
		t.Fatal(err)
	}
	before := eng.Snapshot()
	if err := eng.SetPartnerRules("demo", rules); err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, r := range []UserRule{
		{ID: "r1", Partner: "demo", User: "u1", MatchKey: "dunkin", Nickname: "Morning Coffee", Tag: "Treats", CreatedAt: created},
		{ID: "r2", Partner: "demo", User: "u1", Account: "a2", MatchKey: "dunkin", Nickname: "Office Coffee", Tag: "Work", CreatedAt: created},
		{ID: "r3", Partner: "demo", User: "u1", MatchKey: "dunkin", Nickname: "Newer", Tag: "Newer", CreatedAt: created.Add(time.Hour),
			PostedFrom: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if err := eng.AddUserRule(r); err != nil {
			t.Fatal(err)
		}
	}
	// A snapshot taken before a change is not changed by it.
	if r := before.Enricher("demo").Enrich(Input{Memo: "DUNKIN #1", Cents: -100}); r.Tag != "Diningout" {
		t.Errorf("old snapshot changed: %+v", r)
	}
	e := eng.Snapshot().Enricher("demo")
	may := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	july := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name                  string
		in                    Input
		nickname, tag, reason string
	}{
		{"user rule on this account", Input{Memo: "DUNKIN #1", Cents: -100, User: "u1", Account: "a2", PostedOn: july}, "Office Coffee", "Work", "user-rule:r2"},
		{"newer rule on all accounts, in its dates", Input{Memo: "DUNKIN #1", Cents: -100, User: "u1", Account: "a1", PostedOn: july}, "Newer", "Newer", "user-rule:r3"},
		{"rule on all accounts before the newer one's dates", Input{Memo: "DUNKIN #1", Cents: -100, User: "u1", Account: "a1", PostedOn: may}, "Morning Coffee", "Treats", "user-rule:r1"},
		{"partner rule, another user", Input{Memo: "DUNKIN #1", Cents: -100, User: "u2", Account: "a9"}, "Dunkin Donuts", "Coffee", "partner-rule:demo.tsv:2"},
		{"partner rule with nickname and direction", Input{Memo: "STARBUCKS STORE 1", Cents: -100}, "Starbucks Coffee", "Coffee", "partner-rule:demo.tsv:3"},
		{"partner rule's direction does not fit", Input{Memo: "STARBUCKS STORE 1", Cents: 100}, "Starbucks", "Diningout", "dictionary:starbucks"},
		{"dictionary", Input{Memo: "PEETS COFFEE", Cents: -100}, "Peet's Coffee", "Diningout", "dictionary:peets"},
	} {
		r := e.Enrich(c.in)
		if r.Nickname != c.nickname || r.Tag != c.tag || r.Reason != c.reason {
			t.Errorf("%s: got %q [%s] %s, want %q [%s] %s", c.name, r.Nickname, r.Tag, r.Reason, c.nickname, c.tag, c.reason)
		}
	}
	// Another partner does not see demo's rules.
	if r := eng.Snapshot().Enricher("other").Enrich(Input{Memo: "DUNKIN", Cents: -1}); r.Tag != "Diningout" {
		t.Errorf("partner rules leaked: %+v", r)
	}
}

func TestPartnerRulesErrorsNameLine(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"DUNKIN\tCoffee\n", "rules.tsv:1: want 3 or 4"},
		{"# c\nDUNKIN\t\t\n", "rules.tsv:2: tag is empty"},
		{"DUNKIN\t\tCoffee\tsideways\n", `rules.tsv:1: direction "sideways"`},
		{"\t\tCoffee\n", "rules.tsv:1: match is empty"},
	} {
		_, err := ParsePartnerRules(strings.NewReader(c.text), "rules.tsv")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.text, err, c.want)
		}
	}
}

func TestCheckSplit(t *testing.T) {
	for _, c := range []struct {
		cents int64
		parts []TagAmount
		want  string
	}{
		{-550, []TagAmount{{"Entertainment", 300}, {"Coffee", 250}}, ""},
		{550, []TagAmount{{"Entertainment", 300}, {"Coffee", 250}}, ""},
		{-550, []TagAmount{{"Entertainment", 300}, {"Coffee", 249}}, "tags total 5.49, the transaction's amount is 5.50"},
		{-550, []TagAmount{{"Coffee", 600}, {"Coffee", -50}}, `tag "Coffee" appears twice`},
		{-550, []TagAmount{{"Coffee", 600}, {"Fees", -50}}, "amount must be positive"},
		{-550, nil, "no tags"},
	} {
		err := CheckSplit(c.cents, c.parts)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%d %v: got %v, want %q", c.cents, c.parts, err, c.want)
		}
	}
}

var hits = []string{
	"DUNKINDONUTS*100094",
	"POS DEBIT 1234 STARBUCKS #12345 SEATTLE WA",
	"AMZN Mktp US*2K3L45XY2 Amzn.com/bill WA",
	"CHECKCARD 0312 SHELL OIL 57444213104 HOUSTON TX 24431063072000123456789",
	"ACH DEBIT COMCAST CABLE COMM PPD ID: 0000123",
	"SQ *BLUE BOTTLE COFFEE Oakland CA",
	"WM SUPERCENTER #1234",
	"PURCHASE AUTHORIZED ON 03/12 WHOLEFDS MKT 10234 AUSTIN TX S381071234567890 CARD 1234",
}

// A dictionary hit allocates nothing: enrichment must not load the collector.
func TestDictionaryHitDoesNotAllocate(t *testing.T) {
	e := defaultSnapshot(t).Enricher("demo")
	for _, memo := range hits {
		in := Input{Memo: memo, Cents: -500}
		if r := e.Enrich(in); r.Reason == "unmatched" {
			t.Fatalf("%q is not a dictionary hit", memo)
		}
		if n := testing.AllocsPerRun(100, func() { e.Enrich(in) }); n != 0 {
			t.Errorf("%q: %.1f allocations per memo, want 0", memo, n)
		}
	}
}

func BenchmarkEnrichDictionaryHit(b *testing.B) {
	e := defaultSnapshot(b).Enricher("demo")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e.Enrich(Input{Memo: hits[i%len(hits)], Cents: -500})
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "txn/s")
}

// The long tail: memos no dictionary names, repeating as a partner's do.
func BenchmarkEnrichUnmatched(b *testing.B) {
	e := defaultSnapshot(b).Enricher("demo")
	memos := []string{"JOES PIZZA 1234 BROOKLYN NY", "SQ *SUNRISE BAKERY Portland OR", "ONLINE TRANSFER TO SAV XXXXXX1234",
		"PETES AUTO REPAIR #1 TULSA OK", "CHECK 1021", "ACME CORP DES:PAYROLL ID:XXXXX1234 INDN:DOE JOHN CO ID:XXXXX PPD"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e.Enrich(Input{Memo: memos[i%len(memos)], Cents: -500})
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "txn/s")
}

// Rows carry their result's number: every result two enrichers of one file
// hand out, concurrently, is numbered, and the number finds it.
func TestResultsNumberEveryResult(t *testing.T) {
	s := defaultSnapshot(t)
	results := s.NewResults()
	memos := append([]string{"CHECK 1021", "CHECK 1022", "   ", "ATM WITHDRAWAL 123 MAIN ST", "JOES PIZZA 12 AUSTIN TX"}, hits...)
	got := make([][]*Result, 2)
	done := make(chan int)
	for w := range got {
		go func() {
			e := s.EnricherFor("demo", results)
			for _, memo := range memos {
				for _, cents := range []int64{-500, 500} {
					got[w] = append(got[w], e.Enrich(Input{Memo: memo, Cents: cents}))
				}
			}
			done <- w
		}()
	}
	<-done
	<-done
	made := map[uint32]*Result{}
	for _, r := range results.Take() {
		if made[r.ID] != nil {
			t.Errorf("number %d made twice", r.ID)
		}
		made[r.ID] = r
	}
	for _, rs := range got {
		for _, r := range rs {
			if found := results.Fixed(r.ID); r.ID == 0 || (found != r && made[r.ID] != r) {
				t.Errorf("%q (%s): number %d does not find it", r.Nickname, r.Reason, r.ID)
			}
		}
	}
	if len(results.Take()) != 0 {
		t.Error("Take returned results twice")
	}
}
