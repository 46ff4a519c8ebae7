package enrich

import (
	"os"
	"testing"
)

// The labeled set must meet the quality targets: make test fails if
// enrichment gets worse.
func TestLabeledSetMeetsTargets(t *testing.T) {
	f, err := os.Open("../../fixtures/enrich/labeled.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	labels, err := ParseLabels(f, "labeled.tsv")
	if err != nil {
		t.Fatal(err)
	}
	if len(labels) < 1000 {
		t.Fatalf("labeled set has %d memos, want at least 1000", len(labels))
	}
	ev := Evaluate(defaultSnapshot(t).Enricher("eval"), labels)
	ev.Print(testWriter{t}, 200)
	if fails := ev.Failures(); len(fails) > 0 {
		ev.Print(testWriter{t}, 40)
		t.Fatalf("quality targets missed: %v", fails)
	}
	t.Logf("nickname exact %.1f%%, tag accuracy %.1f%%, wrong tags %.1f%%, macro-F1 %.3f",
		100*ev.NicknameExact, 100*ev.TagAccuracy, 100*ev.WrongTagRate, ev.MacroF1)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
