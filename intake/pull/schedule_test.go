package pull

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/flatfiler/flatfiler/intake/harvest"
)

// TestScheduledRuns: a partner with a schedule is harvested whole when due,
// once per period; a run a stop interrupted goes on at the next start.
func TestScheduledRuns(t *testing.T) {
	ctx := context.Background()
	p := newPartnerSide(t)
	e := newEnv(t, p)
	if _, err := e.h.HarvestUser(ctx, "p", e.cfg, "h1", ""); err != nil { // h1 is known
		t.Fatal(err)
	}
	e.cfg.Schedule = "every 6h"
	partners := func() map[string]*harvest.Config { return map[string]*harvest.Config{"p": e.cfg} }
	dir := t.TempDir()
	newRuns := func() *Runs {
		rs := &Runs{H: e.h, Dir: dir, Context: ctx, Config: func(string) (*harvest.Config, bool) { return e.cfg, true }}
		if err := rs.Open(ctx); err != nil {
			t.Fatal(err)
		}
		return rs
	}
	rs := newRuns()
	now := time.Date(2026, 12, 1, 15, 0, 0, 0, time.UTC)
	if got := rs.Due(ctx, partners, now); len(got) != 0 {
		t.Fatalf("due at once on first sight: %v", got)
	}
	first, _ := rs.PartnerRun("p")
	if first.NextAt.Before(now) || first.NextAt.After(now.Add(36*time.Minute)) {
		t.Fatalf("first run at %s, want within a tenth of the interval", first.NextAt)
	}
	if got := rs.Due(ctx, partners, now.Add(time.Hour)); len(got) != 1 {
		t.Fatalf("not due an hour on: %v", got)
	}
	rs.Wait()
	run, _ := rs.PartnerRun("p")
	if run.Status != Complete || run.Users != 1 || run.Applied != 1 || run.Failed != 0 {
		t.Fatalf("the partner's run: %+v", run)
	}
	if r, ok := rs.Get("p", "h1"); !ok || r.Outcome != "success" {
		t.Errorf("h1's run: %+v", r)
	}
	if got := rs.Due(ctx, partners, now.Add(2*time.Hour)); len(got) != 0 {
		t.Errorf("due again within the interval: %v", got)
	}
	if got := rs.Due(ctx, partners, now.Add(8*time.Hour)); len(got) != 1 {
		t.Errorf("not due after the interval: %v", got)
	}
	rs.Wait()

	// A run that a stop left working on disk goes on at the next start,
	// whether or not it is due.
	state, _ := rs.PartnerRun("p")
	state.Status = Working
	state.StartedAt = now.Add(9 * time.Hour)
	rs.savePartner(&state)
	rs = newRuns()
	if got := rs.Due(ctx, partners, now.Add(9*time.Hour)); len(got) != 1 {
		t.Fatalf("an interrupted run not taken up: %v", got)
	}
	rs.Wait()
	if run, _ := rs.PartnerRun("p"); run.Status != Complete || run.Applied != 1 {
		t.Errorf("the resumed run: %+v", run)
	}
}

// TestSlowPartnerBlocksNoOther: a partner whose endpoint does not answer
// holds only its own runs; another partner's harvest completes meanwhile.
func TestSlowPartnerBlocksNoOther(t *testing.T) {
	ctx := context.Background()
	fast := newPartnerSide(t)
	e := newEnv(t, fast)
	release := make(chan struct{})
	slow := newPartnerSide(t)
	slow.spoil = func(w http.ResponseWriter, r *http.Request, a []byte) {
		select {
		case <-release:
			w.Write(a)
		case <-r.Context().Done():
		}
	}
	slowCfg := *e.cfg
	slowCfg.URL, slowCfg.Timeout = slow.srv.URL, harvest.Duration(time.Minute)
	rs := &Runs{H: e.h, Context: ctx}
	if _, started, err := rs.Start("slow", &slowCfg, "h1"); !started || err != nil {
		t.Fatalf("slow partner's run: %v %v", started, err)
	}
	if _, started, err := rs.Start("p", e.cfg, "h1"); !started || err != nil {
		t.Fatalf("fast partner's run: %v %v", started, err)
	}
	<-rs.doneOf("p", "h1")
	if r, _ := rs.Get("p", "h1"); r.Outcome != "success" {
		t.Errorf("the fast partner's run: %+v", r)
	}
	if r, _ := rs.Get("slow", "h1"); r.Status != Working {
		t.Errorf("the slow partner's run ended first: %+v", r)
	}
	// A second start while it works joins it.
	if _, started, _ := rs.Start("slow", &slowCfg, "h1"); started {
		t.Error("a second run of the slow partner's user started while one works")
	}
	close(release)
	rs.Wait()
	if r, _ := rs.Get("slow", "h1"); r.Status != Complete {
		t.Errorf("the slow partner's run after its endpoint answered: %+v", r)
	}
}
