package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/flatfiler/flatfiler/stages/enrich"
	"github.com/flatfiler/flatfiler/stages/money"
)

// enrichCmd shows what enrichment makes of memos, as a partner's
// integration engineer would try it before sending files.
func enrichCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("enrich", flag.ContinueOnError)
	fs.SetOutput(stderr)
	amount := fs.String("amount", "-1.00", "the transactions' amount: negative for debits, positive for credits")
	rulesFile := fs.String("rules", "", "a partner's rules file (tab-separated: match, nickname, tag, direction)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: flatfiler enrich [--amount A] [--rules FILE] MEMO...\n\nPrints the nickname, tag and reason enrichment gives each memo.")
		fs.PrintDefaults()
	}
	memos, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(memos) == 0 {
		fs.Usage()
		return 2
	}
	cents, err := parseCents(*amount)
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler enrich: --amount: %v\n", err)
		return 2
	}
	snap, err := loadSnapshot(*rulesFile)
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler enrich: %v\n", err)
		return 1
	}
	e := snap.Enricher("cli")
	for _, memo := range memos {
		r := e.Enrich(enrich.Input{Memo: memo, Cents: cents})
		tag := r.Tag
		if tag == "" {
			tag = "(untagged)"
		}
		fmt.Fprintf(stdout, "%s\n  nickname: %s\n  tag:      %s\n  reason:   %s\n", memo, r.Nickname, tag, r.Reason)
	}
	return 0
}

// enrichEvalCmd scores enrichment on a labeled set (make enrich-eval).
func enrichEvalCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("enrich-eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	labels := fs.String("labels", "fixtures/enrich/labeled.tsv", "labeled memos: memo, amount, nickname, tag (tab-separated)")
	rulesFile := fs.String("rules", "", "a partner's rules file to evaluate with")
	misses := fs.Int("misses", 30, "memos got wrong to list")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	f, err := os.Open(*labels)
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler enrich-eval: %v\n", err)
		return 1
	}
	defer f.Close()
	set, err := enrich.ParseLabels(f, *labels)
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler enrich-eval: %v\n", err)
		return 1
	}
	snap, err := loadSnapshot(*rulesFile)
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler enrich-eval: %v\n", err)
		return 1
	}
	ev := enrich.Evaluate(snap.Enricher("eval"), set)
	fmt.Fprintf(stdout, "labels             %s\n", *labels)
	ev.Print(stdout, *misses)
	if fails := ev.Failures(); len(fails) > 0 {
		fmt.Fprintf(stderr, "flatfiler enrich-eval: below target: %s\n", strings.Join(fails, "; "))
		return 1
	}
	return 0
}

func loadSnapshot(rulesFile string) (*enrich.Snapshot, error) {
	dict, err := enrich.DefaultDictionary()
	if err != nil {
		return nil, err
	}
	partners := map[string][]enrich.PartnerRule{}
	if rulesFile != "" {
		f, err := os.Open(rulesFile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		rules, err := enrich.ParsePartnerRules(f, rulesFile)
		if err != nil {
			return nil, err
		}
		partners["cli"], partners["eval"] = rules, rules
	}
	return enrich.Build(dict, partners, nil)
}

// parseCents reads --amount: at most two decimals, as every amount.
func parseCents(s string) (int64, error) {
	c, err := money.Parse(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not an amount such as -12.50", s)
	}
	return c, nil
}
