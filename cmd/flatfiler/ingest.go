package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/flatfiler/flatfiler/parse"
	"github.com/flatfiler/flatfiler/pipeline"
	"github.com/flatfiler/flatfiler/warehouse"
)

var partnerPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// parseInterspersed parses flags that may come before, between or after the
// positional arguments, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

func ingestCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", warehouse.DefaultPath, "warehouse file")
	partner := fs.String("partner", "demo", "partner the files belong to")
	typ := fs.String("type", "", "file type: combined, users, accounts or transactions (default: detected; a type imports only its records)")
	asOf := fs.String("as-of", "", "business date of the balance snapshots, YYYY-MM-DD (default: today, UTC)")
	asJSON := fs.Bool("json", false, "print one JSON report per file on stdout")
	workers := fs.Int("workers", 0, "parser goroutines (default: GOMAXPROCS)")
	memory := addMemoryFlags(fs)
	cpuProfile := fs.String("cpuprofile", "", "write a Go CPU profile to this file (for performance work)")
	rulesFile := fs.String("rules", "", "the partner's enrichment rules (tab-separated: match, nickname, tag, direction)")
	enrichOn := fs.Bool("enrich", true, "give transactions nicknames and tags; false only to measure what enrichment costs")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: flatfiler ingest [flags] FILE...\n\nApplies each file atomically, in the order given. A FILE ending in .json\nis a push batch (the body of PUT /api/v2/batches); its callback is not made.")
		fs.PrintDefaults()
	}
	files, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(files) == 0 {
		fs.Usage()
		return 2
	}
	opts := pipeline.Options{Partner: *partner, Workers: *workers}
	if !partnerPattern.MatchString(*partner) {
		fmt.Fprintf(stderr, "flatfiler ingest: --partner %q: use letters, digits, '.', '_' or '-'\n", *partner)
		return 2
	}
	if *typ != "" {
		if opts.Type, err = parse.ParseFileType(*typ); err != nil {
			fmt.Fprintf(stderr, "flatfiler ingest: --type: %v\n", err)
			return 2
		}
	}
	if *asOf != "" {
		if opts.AsOf, err = time.Parse(time.DateOnly, *asOf); err != nil {
			fmt.Fprintf(stderr, "flatfiler ingest: --as-of %q: want YYYY-MM-DD\n", *asOf)
			return 2
		}
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "flatfiler ingest: %v\n", err)
			return 1
		}
		defer stop()
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts.Logger = logger

	faults, err := faultPoints(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler ingest: %s: %v\n", faultsEnv, err)
		return 2
	}
	usual, commit, err := memory.limits()
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler ingest: %v\n", err)
		return 2
	}
	store, err := warehouse.Open(ctx, *db, warehouse.Options{MemoryLimit: usual, CommitMemoryLimit: commit, Logger: logger, Faults: faults})
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler ingest: %v\n", err)
		return 1
	}
	defer store.Close()
	pipe := &pipeline.Pipeline{Store: store, Metrics: pipeline.NewMetrics(prometheus.NewRegistry())}
	if *enrichOn {
		rules := map[string]string{}
		if *rulesFile != "" {
			rules[*partner] = *rulesFile
		}
		if pipe.Enrich, err = pipeline.LoadEnrichment(ctx, store, rules); err != nil {
			fmt.Fprintf(stderr, "flatfiler ingest: %v\n", err)
			return 1
		}
	}

	interactive := false
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) && !*asJSON {
		interactive = true
	}
	code := 0
	enc := json.NewEncoder(stdout)
	for _, file := range files {
		fileOpts := opts
		if strings.EqualFold(filepath.Ext(file), ".json") {
			fileOpts.Format = pipeline.PushBatch // a push batch's body, applied without its callback
		}
		var bar *progressbar.ProgressBar
		if interactive {
			bar = newProgressBar(file, stderr)
			fileOpts.OnProgress = progressUpdater(bar)
		}
		rep, err := pipe.IngestFile(ctx, file, fileOpts)
		if bar != nil {
			_ = bar.Finish()
			fmt.Fprintln(stderr)
		}
		if err != nil {
			code = 1
		}
		if *asJSON {
			_ = enc.Encode(rep)
			continue
		}
		printSummary(stdout, rep)
		if ctx.Err() != nil {
			break
		}
	}
	return code
}

func newProgressBar(file string, w io.Writer) *progressbar.ProgressBar {
	size := int64(-1)
	if st, err := os.Stat(file); err == nil {
		size = st.Size()
	}
	return progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(file),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetWidth(30),
	)
}

func progressUpdater(bar *progressbar.ProgressBar) func(bytes, records int64) {
	start := time.Now()
	return func(bytes, records int64) {
		rate := float64(records) / time.Since(start).Seconds()
		bar.Describe(fmt.Sprintf("%.0f records/s", rate))
		_ = bar.Set64(bytes)
	}
}

func printSummary(w io.Writer, r *pipeline.Report) {
	if !r.Applied {
		fmt.Fprintf(w, "%s: NOT APPLIED, the warehouse is unchanged: %s\n", r.File, r.Fatal)
		return
	}
	t := r.Totals
	mbps := float64(r.Bytes) / 1e6 / max(r.Seconds, 1e-9)
	fmt.Fprintf(w, "%s: %s (%s) in %.1fs, %.1f MB/s\n", r.File, r.Status, r.Type, r.Seconds, mbps)
	fmt.Fprintf(w, "  users %d/%d, accounts %d/%d, transactions %d/%d applied; %d skipped (investment accounts); %d errors\n",
		t.Users.Success, t.Users.Total, t.Accounts.Success, t.Accounts.Total,
		t.Transactions.Success, t.Transactions.Total, r.Skipped, r.ErrorCount)
	for _, e := range r.Errors {
		where := fmt.Sprintf("line %d", e.Line)
		if e.Path != "" {
			where += " " + e.Path // a batch's record: line alone names only its user
		}
		fmt.Fprintf(w, "  %s: %s %s: %s: %s\n", where, e.Context, e.Identifier, e.Field, e.Message)
	}
	if int64(len(r.Errors)) < r.ErrorCount {
		fmt.Fprintf(w, "  ... %d more errors (use --json for the report)\n", r.ErrorCount-int64(len(r.Errors)))
	}
}

// startCPUProfile profiles the process into path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
