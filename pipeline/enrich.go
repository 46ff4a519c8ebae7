package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/flatfiler/flatfiler/stages"
	"github.com/flatfiler/flatfiler/stages/enrich"
	"github.com/flatfiler/flatfiler/warehouse"
)

// enrichStage gives validated transactions their nickname, tag and reason.
// It runs on the parser's workers, after validation: each row's result
// depends only on the row and the rules. User rules, which depend on who
// owns the account once the file's actions are resolved, are applied by
// the warehouse at commit.
type enrichStage struct {
	// One snapshot for the whole file: the same file and rules give the
	// same result, whatever changes while it loads.
	snap    *enrich.Snapshot
	partner string
	// results numbers the file's results; the warehouse stages them at commit.
	results *enrich.Results
	// free holds enrichers between chunks. Not a sync.Pool: the collector
	// empties those, and an enricher's cache of cleaned names is worth
	// keeping for the whole file.
	free    chan *enrich.Enricher
	metrics *Metrics
}

func newEnrichStage(engine *enrich.Engine, partner string, m *Metrics) *enrichStage {
	if engine == nil {
		return nil
	}
	snap := engine.Snapshot()
	return &enrichStage{snap: snap, partner: partner, results: snap.NewResults(), metrics: m, free: make(chan *enrich.Enricher, 64)}
}

// numbered returns the file's results by number, for the warehouse; nil
// when enrichment is off.
func (s *enrichStage) numbered() *enrich.Results {
	if s == nil {
		return nil
	}
	return s.results
}

func (s *enrichStage) apply(rows []stages.Transaction) {
	if s == nil || len(rows) == 0 {
		return
	}
	var e *enrich.Enricher
	select {
	case e = <-s.free:
	default:
		e = s.snap.EnricherFor(s.partner, s.results)
	}
	defer func() {
		select {
		case s.free <- e:
		default:
		}
	}()
	var counts [enrich.NumSources]int
	for i := range rows {
		t := &rows[i]
		r := e.Enrich(enrich.Input{Memo: t.Memo, Cents: t.Cents, CheckNumber: t.CheckNumber})
		t.EnrichmentID = r.ID
		if r.CheckNumber != "" {
			t.CheckNumber = r.CheckNumber
		}
		counts[r.Source]++
	}
	for source, n := range counts {
		if n > 0 {
			s.metrics.Enriched.WithLabelValues(enrich.Source(source).String()).Add(float64(n))
		}
	}
}

// RulesSuffix names a partner's rules file in the partners directory:
// PARTNER.rules.tsv (see enrich.ParsePartnerRules).
const RulesSuffix = ".rules.tsv"

// LoadEnrichment builds the enrichment engine: the shipped merchant
// dictionary, the users' rules stored in the warehouse, and partners'
// rules files (partner -> path).
func LoadEnrichment(ctx context.Context, store *warehouse.Store, rulesFiles map[string]string) (*enrich.Engine, error) {
	dict, err := enrich.DefaultDictionary()
	if err != nil {
		return nil, err
	}
	engine, err := enrich.NewEngine(dict)
	if err != nil {
		return nil, err
	}
	for partner, path := range rulesFiles {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("rules of partner %s: %w", partner, err)
		}
		rules, err := enrich.ParsePartnerRules(f, path)
		f.Close()
		if err != nil {
			return nil, err
		}
		if err := engine.SetPartnerRules(partner, rules); err != nil {
			return nil, err
		}
	}
	users, err := store.UserRules(ctx)
	if err != nil {
		return nil, err
	}
	if err := engine.SetUserRules(users); err != nil {
		return nil, err
	}
	return engine, nil
}

// RulesFiles finds the partners' rules files in dir (PARTNER.rules.tsv).
func RulesFiles(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range entries {
		if partner, ok := strings.CutSuffix(e.Name(), RulesSuffix); ok && !e.IsDir() {
			out[partner] = filepath.Join(dir, e.Name())
		}
	}
	return out, nil
}

// AddUserRule stores a user's rule and puts it in force: with retag (the
// spec's any_date) the user's stored transactions it matches are re-tagged
// at once; new files get it either way. It returns how many were re-tagged.
func (p *Pipeline) AddUserRule(ctx context.Context, r enrich.UserRule, retag bool) (int64, error) {
	if p.Enrich == nil {
		return 0, fmt.Errorf("enrichment is off")
	}
	n, err := p.Store.AddUserRule(ctx, r, retag)
	if err != nil {
		return 0, err
	}
	return n, p.Enrich.AddUserRule(r)
}
