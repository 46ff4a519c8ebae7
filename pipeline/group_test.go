package pipeline

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// pushBatch is a batch of one user with one account and its transactions,
// given as (reference_id, balance, nickname).
func pushBatch(user, account string, txns ...[3]string) string {
	var list []string
	for _, t := range txns {
		nick := ""
		if t[2] != "" {
			nick = fmt.Sprintf(`, "nickname": %q`, t[2])
		}
		list = append(list, fmt.Sprintf(`{"reference_id": %q, "balance": %q, "posted_at": "2026-11-02", "memo": "DUNKIN #1 BOSTON MA"%s}`, t[0], t[1], nick))
	}
	return fmt.Sprintf(`{"users": [{"partner_customer_id": %q, "first_name": "A", "last_name": %q, "email": "a@example.com",
"accounts": [{"reference_id": %q, "name": "Checking", "account_type": "checking",
  "account_balances": [{"balance_type": "current", "balance_amount": "10.00"}], "transactions": [%s]}]}]}`,
		user, "L-"+account, account, strings.Join(list, ","))
}

// Batches applied as one group leave the warehouse as applying them one
// after another does: a later batch's record wins, each row names its own
// batch, and each batch has its own report and audit row.
func TestGroupEqualsOneByOne(t *testing.T) {
	batches := []string{
		pushBatch("u1", "a1", [3]string{"t1", "-1.00", ""}, [3]string{"t2", "-2.00", "Coffee"}),
		pushBatch("u2", "a2", [3]string{"t1", "-3.00", ""}),
		// u1 again: t1 changes, t3 is new, t2's nickname changes.
		pushBatch("u1", "a1", [3]string{"t1", "-4.00", ""}, [3]string{"t2", "-2.00", "Donuts"}, [3]string{"t3", "5.00", ""}),
		pushBatch("u3", "a3", [3]string{"t9", "bad", ""}),
	}
	opts := Options{Partner: "demo", AsOf: asOf, Format: PushBatch}
	serial, grouped := newHarness(t), newHarness(t)
	var want []string
	for i, b := range batches {
		rep, err := serial.pipeline.Ingest(context.Background(), fmt.Sprintf("batch-%d.json", i), strings.NewReader(b), opts)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, reportJSON(rep))
	}
	var parts []Part
	for i, b := range batches {
		parts = append(parts, Part{Name: fmt.Sprintf("batch-%d.json", i), R: strings.NewReader(b), JobID: fmt.Sprint("job-", i)})
	}
	reps, err := grouped.pipeline.IngestGroup(context.Background(), parts, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i, rep := range reps {
		if got := reportJSON(rep); got != want[i] {
			t.Errorf("batch %d: grouped report\n%s\nwant, as applied alone,\n%s", i, got, want[i])
		}
	}
	if got, want := grouped.dump(), serial.dump(); got != want {
		t.Errorf("grouped warehouse differs from one by one:\n%s", diffLines(got, want))
	}
	if n := grouped.count(`SELECT count(*) FROM transactions WHERE transaction_id = 't3' AND source_file = 'batch-2.json'`); n != 1 {
		t.Errorf("t3's source_file: %d rows name batch-2.json, want 1", n)
	}
	if n := grouped.count(`SELECT count(DISTINCT job_id) FROM ingests WHERE file LIKE 'batch-%.json' AND job_id = 'job-' || substr(file, 7, 1)`); n != 4 {
		t.Errorf("audit rows: %d batches have their own row and job id, want 4", n)
	}
	if reps[3].Status != StatusPartialSuccess || reps[0].Status != StatusSuccess {
		t.Errorf("statuses %s, %s; want success, partial-success", reps[0].Status, reps[3].Status)
	}
}

// A part that cannot be applied fails its group whole: nothing of the
// others is applied, and the error names the part.
func TestGroupWithABrokenPartAppliesNothing(t *testing.T) {
	h := newHarness(t)
	parts := []Part{
		{Name: "good.json", R: strings.NewReader(pushBatch("u1", "a1", [3]string{"t1", "-1.00", ""}))},
		{Name: "broken.json", R: strings.NewReader(`{"users": [{"partner_customer_id": "u2", "accounts": [}]}`)},
	}
	reps, err := h.pipeline.IngestGroup(context.Background(), parts, Options{Partner: "demo", AsOf: asOf, Format: PushBatch})
	if err == nil || !strings.Contains(err.Error(), "broken.json") {
		t.Fatalf("err %v, want one naming broken.json", err)
	}
	if n := h.count(`SELECT count(*) FROM users`) + h.count(`SELECT count(*) FROM ingests`); n != 0 {
		t.Errorf("%d users and audit rows applied, want none", n)
	}
	if reps[0].Applied || reps[1].Applied || !strings.Contains(reps[1].Fatal, "broken.json") || !strings.Contains(reps[0].Fatal, "broken.json") {
		t.Errorf("reports %+v, %+v: want neither applied, both naming broken.json", reps[0], reps[1])
	}
}
