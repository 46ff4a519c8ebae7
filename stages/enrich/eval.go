package enrich

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Label is one labeled memo: what enrichment should decide.
type Label struct {
	Memo     string
	Cents    int64
	Nickname string
	Tag      string // empty: should stay untagged
	Line     int
}

// ParseLabels reads a labeled set: tab-separated memo, amount (signed
// decimal), expected nickname, expected tag (may be empty). # starts a comment.
func ParseLabels(r io.Reader, name string) ([]Label, error) {
	var out []Label
	err := eachLine(r, name, func(line int, f []string) error {
		if len(f) == 3 {
			f = append(f, "")
		}
		if len(f) != 4 {
			return fmt.Errorf("want 4 tab-separated fields (memo, amount, nickname, tag), got %d", len(f))
		}
		amount, err := strconv.ParseFloat(strings.TrimSpace(f[1]), 64)
		if err != nil {
			return fmt.Errorf("amount %q: %w", f[1], err)
		}
		cents := int64(amount*100 + 0.5)
		if amount < 0 {
			cents = int64(amount*100 - 0.5)
		}
		out = append(out, Label{Memo: f[0], Cents: cents, Nickname: f[2], Tag: strings.TrimSpace(f[3]), Line: line})
		return nil
	})
	return out, err
}

// Targets are the quality bars enrichment must meet on a labeled set.
var Targets = struct{ NicknameExact, TagAccuracy, WrongTagMax float64 }{0.95, 0.90, 0.03}

// TagScore is precision and recall of one tag.
type TagScore struct {
	Tag                 string
	Expected, Predicted int
	Correct             int
	Precision, Recall   float64
	F1                  float64
}

// Miss is one memo enrichment got wrong.
type Miss struct {
	Label
	Got Result
}

// Evaluation is how enrichment did on a labeled set.
type Evaluation struct {
	Total         int
	NicknameExact float64 // share of nicknames exactly as expected
	TagAccuracy   float64 // share of tags as expected, untagged included
	MacroF1       float64 // mean F1 over tags expected or predicted
	UntaggedRate  float64 // share left untagged
	WrongTagRate  float64 // share tagged, but not as expected
	Tags          []TagScore
	Misses        []Miss
}

// Evaluate enriches every labeled memo with e and scores the results.
func Evaluate(e *Enricher, labels []Label) Evaluation {
	ev := Evaluation{Total: len(labels)}
	scores := map[string]*TagScore{}
	score := func(tag string) *TagScore {
		if scores[tag] == nil {
			scores[tag] = &TagScore{Tag: tag}
		}
		return scores[tag]
	}
	var nick, tagOK, untagged, wrong int
	for _, l := range labels {
		r := *e.Enrich(Input{Memo: l.Memo, Cents: l.Cents})
		nickOK := r.Nickname == l.Nickname
		if nickOK {
			nick++
		}
		switch {
		case r.Tag == l.Tag:
			tagOK++
		case r.Tag != "":
			wrong++
		}
		if r.Tag == "" {
			untagged++
		}
		if l.Tag != "" {
			score(l.Tag).Expected++
		}
		if r.Tag != "" {
			s := score(r.Tag)
			s.Predicted++
			if r.Tag == l.Tag {
				s.Correct++
			}
		}
		if !nickOK || r.Tag != l.Tag {
			ev.Misses = append(ev.Misses, Miss{Label: l, Got: r})
		}
	}
	n := float64(max(len(labels), 1))
	ev.NicknameExact, ev.TagAccuracy = float64(nick)/n, float64(tagOK)/n
	ev.UntaggedRate, ev.WrongTagRate = float64(untagged)/n, float64(wrong)/n
	for _, s := range scores {
		if s.Predicted > 0 {
			s.Precision = float64(s.Correct) / float64(s.Predicted)
		}
		if s.Expected > 0 {
			s.Recall = float64(s.Correct) / float64(s.Expected)
		}
		if s.Precision+s.Recall > 0 {
			s.F1 = 2 * s.Precision * s.Recall / (s.Precision + s.Recall)
		}
		ev.Tags = append(ev.Tags, *s)
		ev.MacroF1 += s.F1
	}
	if len(ev.Tags) > 0 {
		ev.MacroF1 /= float64(len(ev.Tags))
	}
	sort.Slice(ev.Tags, func(i, j int) bool { return ev.Tags[i].Tag < ev.Tags[j].Tag })
	return ev
}

// Failures lists the targets missed, empty when all are met.
func (ev Evaluation) Failures() []string {
	var out []string
	if ev.NicknameExact < Targets.NicknameExact {
		out = append(out, fmt.Sprintf("nickname exact match %.1f%% is below %.0f%%", 100*ev.NicknameExact, 100*Targets.NicknameExact))
	}
	if ev.TagAccuracy < Targets.TagAccuracy {
		out = append(out, fmt.Sprintf("tag accuracy %.1f%% is below %.0f%%", 100*ev.TagAccuracy, 100*Targets.TagAccuracy))
	}
	if ev.WrongTagRate > Targets.WrongTagMax {
		out = append(out, fmt.Sprintf("wrong tags %.1f%% are above %.0f%%", 100*ev.WrongTagRate, 100*Targets.WrongTagMax))
	}
	return out
}

// Print writes the evaluation as a report; misses lists up to that many
// memos enrichment got wrong.
func (ev Evaluation) Print(w io.Writer, misses int) {
	fmt.Fprintf(w, "memos              %d\n", ev.Total)
	fmt.Fprintf(w, "nickname exact     %5.1f%%   (target >= %.0f%%)\n", 100*ev.NicknameExact, 100*Targets.NicknameExact)
	fmt.Fprintf(w, "tag accuracy       %5.1f%%   (target >= %.0f%%)\n", 100*ev.TagAccuracy, 100*Targets.TagAccuracy)
	fmt.Fprintf(w, "wrong tags         %5.1f%%   (target <= %.0f%%)\n", 100*ev.WrongTagRate, 100*Targets.WrongTagMax)
	fmt.Fprintf(w, "untagged           %5.1f%%\n", 100*ev.UntaggedRate)
	fmt.Fprintf(w, "macro-F1           %5.3f\n\n", ev.MacroF1)
	fmt.Fprintf(w, "%-15s %9s %9s %9s %9s %7s\n", "tag", "expected", "predicted", "precision", "recall", "F1")
	for _, s := range ev.Tags {
		fmt.Fprintf(w, "%-15s %9d %9d %8.1f%% %8.1f%% %7.3f\n", s.Tag, s.Expected, s.Predicted, 100*s.Precision, 100*s.Recall, s.F1)
	}
	if len(ev.Misses) > 0 && misses > 0 {
		fmt.Fprintf(w, "\nmisses (%d; line: memo => got nickname [tag], want nickname [tag]):\n", len(ev.Misses))
		for i, m := range ev.Misses {
			if i == misses {
				fmt.Fprintf(w, "  ... %d more\n", len(ev.Misses)-misses)
				break
			}
			fmt.Fprintf(w, "  %d: %s => %q [%s], want %q [%s]\n", m.Line, m.Memo, m.Got.Nickname, m.Got.Tag, m.Nickname, m.Tag)
		}
	}
}
