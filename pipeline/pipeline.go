// Package pipeline is the one way records reach the warehouse, whatever
// delivered them (intake/jobs for SFTP files and push batches, a pull
// harvest later): parse -> validate -> enrich -> resolve and upsert, one
// file or batch per DuckDB transaction, with one Report.
//
// Delivery packages receive and persist; they hand the pipeline a reader
// and its Format, and keep the Report.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/flatfiler/flatfiler/parse"
	"github.com/flatfiler/flatfiler/stages"
	"github.com/flatfiler/flatfiler/stages/enrich"
	"github.com/flatfiler/flatfiler/warehouse"
)

// Format is how a source writes its records.
type Format string

const (
	// FlatFile is the XML flat file of the spec's "Flat File" section.
	FlatFile Format = ""
	// PushBatch is the JSON body of the Push Data Source's PUT /api/v2/batches.
	PushBatch Format = "push-batch"
)

// Options for one ingest.
type Options struct {
	Partner string
	// Format of the input; the zero value is a flat file.
	Format Format
	// Type limits what is imported (the spec: a file typed accounts imports
	// only accounts); empty imports everything the file holds.
	Type      parse.FileType
	AsOf      time.Time // business date of balance snapshots; default today (UTC)
	Workers   int       // parser goroutines; default GOMAXPROCS
	BatchRows int       // rows per Arrow batch merged into the warehouse; default 100,000
	MaxErrors int       // rejections listed in the report (all are counted); default 100
	// OnProgress, if set, is called after each chunk with the bytes read and
	// records seen so far.
	OnProgress func(bytes, records int64)
	Logger     *slog.Logger
	// JobID is stored with the file's audit row (ingests.job_id).
	JobID string
	// Profiles are stored with the records, in their transaction: the
	// fields of the API's user writes that files do not carry.
	Profiles []warehouse.Profile
	// PostedFrom, if set, is the earliest posting date kept of an account's
	// transactions; older ones are skipped (stages.Validator.PostedFrom).
	PostedFrom func(accountID string) time.Time
	// CloseAccounts and ProtectBefore are a pull harvest's
	// (warehouse.LoadOptions).
	CloseAccounts []string
	ProtectBefore time.Time
}

// Status values, as the spec's push batch callbacks use them.
const (
	StatusSuccess        = "success"
	StatusPartialSuccess = "partial-success"
	StatusError          = "error"
)

// Outcome is what became of a file's records, in the vocabulary of the
// spec's push batch callbacks. Reports and upload jobs both carry it.
type Outcome struct {
	Totals     stages.Totals      `json:"totals"`
	Skipped    int64              `json:"skipped"`
	ErrorCount int64              `json:"error_count"`
	Errors     []stages.Rejection `json:"errors"` // the first MaxErrors, in file order
}

// Report is the outcome of one file, in the vocabulary of the spec's push batches.
type Report struct {
	File    string         `json:"file"`
	Type    parse.FileType `json:"type"`
	Status  string         `json:"status"`
	Applied bool           `json:"applied"`
	Outcome
	// Fatal says why the file was not applied at all.
	Fatal string `json:"fatal,omitempty"`
	// Retryable: the file was not applied for the server's storage (a full
	// disk, an I/O error), not for anything in it; the same file applies
	// once that is fixed.
	Retryable bool    `json:"retryable,omitempty"`
	Bytes     int64   `json:"bytes"`
	Seconds   float64 `json:"seconds"`
}

// Records is the number of records counted, skipped ones included.
func (r *Report) Records() int64 {
	t := r.Totals
	return t.Users.Total + t.Accounts.Total + t.Transactions.Total + r.Skipped
}

// Pipeline ingests files into one warehouse.
type Pipeline struct {
	Store   *warehouse.Store
	Metrics *Metrics
	// Enrich holds the enrichment rules; nil leaves transactions without
	// nickname and tags (to measure what enrichment costs).
	Enrich *enrich.Engine
}

// IngestFile applies the file at path. The error is non-nil only when the
// file was not applied; the report says why, with line and column.
func (p *Pipeline) IngestFile(ctx context.Context, path string, opts Options) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		rep := &Report{File: path, Status: StatusError, Fatal: err.Error(), Outcome: Outcome{Errors: []stages.Rejection{}}}
		return rep, err
	}
	defer f.Close()
	return p.Ingest(ctx, path, f, opts)
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// Ingest applies one file read from r; name identifies it in reports and rows.
func (p *Pipeline) Ingest(ctx context.Context, name string, r io.Reader, opts Options) (*Report, error) {
	reps, err := p.IngestGroup(ctx, []Part{{Name: name, R: r, JobID: opts.JobID, OnProgress: opts.OnProgress}}, opts)
	return reps[0], err
}

// Part is one file or batch of a group applied together.
type Part struct {
	Name  string // identifies it in reports and rows
	R     io.Reader
	JobID string // stored with its audit row
	// OnProgress, if set, is called after each chunk with the bytes read
	// and records seen so far.
	OnProgress func(bytes, records int64)
}

// IngestGroup applies parts, in order, in one warehouse transaction, each
// with its own report and audit row: the result is the same as applying
// them one after another, at the cost of one commit. A partner's small
// push batches queued together apply so (see intake/jobs), since a
// commit's fixed cost is most of a small batch's time.
//
// The error is non-nil only when nothing was applied. A part that cannot
// be applied (its Fatal says why) fails the whole group: its caller may
// apply the others on their own. opts.JobID and opts.OnProgress are the
// parts'.
func (p *Pipeline) IngestGroup(ctx context.Context, parts []Part, opts Options) ([]*Report, error) {
	started := time.Now()
	if opts.AsOf.IsZero() {
		opts.AsOf = time.Now().UTC().Truncate(24 * time.Hour)
	}
	if opts.BatchRows <= 0 {
		opts.BatchRows = 100_000
	}
	if opts.MaxErrors <= 0 {
		opts.MaxErrors = 100
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	runs := make([]*partRun, len(parts))
	reps := make([]*Report, len(parts))
	for i, part := range parts {
		reps[i] = &Report{File: part.Name, Type: opts.Type, Outcome: Outcome{Errors: []stages.Rejection{}}}
		runs[i] = &partRun{Part: part, in: &countingReader{r: part.R}, rep: reps[i]}
	}

	failed, err := p.run(ctx, runs, opts)
	seconds := time.Since(started).Seconds()
	p.Metrics.Stage.WithLabelValues("file").Observe(seconds)
	p.Metrics.Bytes.Add(float64(totalBytes(runs)))
	if err != nil {
		for i, r := range runs {
			r.rep.Applied, r.rep.Status, r.rep.Seconds = false, StatusError, seconds
			r.rep.Bytes = r.in.n.Load()
			r.rep.Retryable = errors.Is(err, warehouse.ErrStorage)
			switch {
			case failed < 0 || i == failed:
				r.rep.Fatal = fmt.Sprintf("%s: %v", filepath.Base(r.Name), err)
			default:
				r.rep.Fatal = fmt.Sprintf("not applied: it was to be committed with %s, which could not be", filepath.Base(runs[failed].Name))
			}
		}
		p.Metrics.Files.WithLabelValues(StatusError).Add(float64(len(runs)))
		name := parts[0].Name
		if failed >= 0 {
			name = parts[failed].Name
		}
		log.Error("file not applied", "file", name, "partner", opts.Partner, "group", len(parts), "err", err)
		return reps, fmt.Errorf("%s: %w", name, err)
	}
	for _, r := range runs {
		rep := r.rep
		rep.Bytes, rep.Seconds = r.in.n.Load(), seconds
		p.Metrics.Files.WithLabelValues(rep.Status).Inc()
		for _, k := range []struct {
			kind string
			c    stages.Count
		}{{"user", rep.Totals.Users}, {"account", rep.Totals.Accounts}, {"transaction", rep.Totals.Transactions}} {
			p.Metrics.Records.WithLabelValues(k.kind, "success").Add(float64(k.c.Success))
			p.Metrics.Records.WithLabelValues(k.kind, "error").Add(float64(k.c.Error))
		}
		p.Metrics.Records.WithLabelValues("transaction", "skipped").Add(float64(rep.Skipped))
		log.Info("file applied", "file", r.Name, "partner", opts.Partner, "type", rep.Type, "status", rep.Status,
			"records", rep.Records(), "errors", rep.ErrorCount, "bytes", rep.Bytes, "seconds", rep.Seconds, "group", len(parts))
	}
	return reps, nil
}

// partRun is a part being applied.
type partRun struct {
	Part
	in  *countingReader
	rep *Report
}

func totalBytes(runs []*partRun) (n int64) {
	for _, r := range runs {
		n += r.in.n.Load()
	}
	return n
}

// loadBatch is a batch of rows for the loader, and the report of the part
// they came from.
type loadBatch struct {
	rows *stages.Batch
	rep  *Report
}

// run stages every part and commits them at once. failed is the index of
// the part whose input ended the group (-1: none was at fault).
func (p *Pipeline) run(ctx context.Context, runs []*partRun, opts Options) (failed int, _ error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	enricher := newEnrichStage(p.Enrich, opts.Partner, p.Metrics)
	load, err := p.Store.Begin(ctx, warehouse.LoadOptions{
		Partner: opts.Partner, AsOf: opts.AsOf, Source: filepath.Base(runs[0].Name), MaxRejections: opts.MaxErrors,
		Enrichments: enricher.numbered(), Profiles: opts.Profiles, CloseAccounts: opts.CloseAccounts, ProtectBefore: opts.ProtectBefore,
	})
	if err != nil {
		return -1, err
	}
	committed := false
	defer func() {
		if !committed {
			load.Rollback()
		}
	}()

	// The loader stages a batch while the parser fills the next; the
	// handoff is unbuffered, so at most two batches are in memory.
	batches := make(chan loadBatch)
	loaded := make(chan error, 1)
	go func() {
		var loadErr error
		for b := range batches {
			if loadErr != nil {
				continue
			}
			t := time.Now()
			applied, err := load.Apply(ctx, b.rows)
			p.Metrics.Stage.WithLabelValues("load").Observe(time.Since(t).Seconds())
			if err != nil {
				loadErr = err
				cancel()
				continue
			}
			b.rep.addApplied(applied, opts.MaxErrors)
		}
		loaded <- loadErr
	}()

	var base stages.Seq
	failed = -1
	var parseErr error
	for i, r := range runs {
		if len(runs) > 1 {
			load.Part(base, filepath.Base(r.Name))
		}
		if parseErr = p.parsePart(ctx, r, opts, enricher, &base, batches); parseErr != nil {
			failed = i
			break
		}
	}
	close(batches)
	loadErr := <-loaded
	if loadErr != nil {
		return -1, loadErr
	}
	if parseErr != nil {
		return failed, parseErr
	}
	recs := make([]warehouse.IngestRecord, len(runs))
	for i, r := range runs {
		r.rep.finish()
		recs[i] = warehouse.IngestRecord{File: filepath.Base(r.Name), FileType: string(r.rep.Type), Status: r.rep.Status,
			Bytes: r.in.n.Load(), Report: r.rep, JobID: r.JobID}
	}
	// Parsing is over and its buffers are garbage: hand their pages back
	// before the warehouse's heaviest phase, so peak memory is one or the other.
	debug.FreeOSMemory()
	t := time.Now()
	err = load.Commit(ctx, recs...)
	p.Metrics.Stage.WithLabelValues("commit").Observe(time.Since(t).Seconds())
	if err != nil {
		return -1, err
	}
	committed = true
	for _, r := range runs {
		r.rep.Applied = true
	}
	return -1, nil
}

// parsePart decodes, validates and enriches one part, handing its rows to
// the loader in batches of its own (so that what the warehouse rejects is
// counted in its report). base is the seq its rows start at, moved past
// them.
func (p *Pipeline) parsePart(ctx context.Context, r *partRun, opts Options, enricher *enrichStage, base *stages.Seq, batches chan<- loadBatch) error {
	rep := r.rep
	dec := parse.NewDecoder(r.in, parse.Options{Workers: opts.Workers, Type: opts.Type})
	validator := stages.Validator{Type: opts.Type, PostedFrom: opts.PostedFrom}
	if opts.Format == PushBatch {
		dec = parse.NewBatchDecoder(r.in, parse.Options{Workers: opts.Workers})
		validator = stages.Validator{Type: parse.Combined, Batch: true, PostedFrom: opts.PostedFrom}
		rep.Type = parse.Combined
	}
	nested := false
	cur, curRows := &stages.Batch{}, 0
	send := func() error {
		select {
		case batches <- loadBatch{cur, rep}:
		case <-ctx.Done():
			return ctx.Err()
		}
		cur, curRows = &stages.Batch{}, 0
		return nil
	}
	work := func(recs []parse.Record) stages.Validated {
		t := time.Now()
		v := validator.Validate(recs)
		p.Metrics.Stage.WithLabelValues("validate").Observe(time.Since(t).Seconds())
		t = time.Now()
		enricher.apply(v.Batch.Transactions)
		p.Metrics.Stage.WithLabelValues("enrich").Observe(time.Since(t).Seconds())
		return v
	}
	deliver := func(v stages.Validated) error {
		nested = nested || v.Nested
		n := shiftSeq(&v.Batch, *base)
		*base += n
		cur.Users = append(cur.Users, v.Batch.Users...)
		cur.Accounts = append(cur.Accounts, v.Batch.Accounts...)
		cur.Transactions = append(cur.Transactions, v.Batch.Transactions...)
		curRows += v.Batch.Rows()
		rep.addValidated(v, opts.MaxErrors)
		if curRows >= opts.BatchRows {
			if err := send(); err != nil {
				return err
			}
		}
		if r.OnProgress != nil {
			r.OnProgress(r.in.n.Load(), rep.Records())
		}
		return nil
	}
	if err := parse.Each(ctx, dec, work, deliver); err != nil {
		return err
	}
	if curRows > 0 {
		if err := send(); err != nil {
			return err
		}
	}
	if rep.Type == "" {
		rep.Type, _ = dec.Root()
		if rep.Type == parse.Combined && !nested {
			rep.Type = parse.Users
		}
	}
	return nil
}

// shiftSeq moves a chunk's local sequence numbers into file order and returns
// how many it used.
func shiftSeq(b *stages.Batch, base stages.Seq) stages.Seq {
	n := stages.Seq(0)
	for i := range b.Users {
		b.Users[i].Seq += base
		n++
	}
	for i := range b.Accounts {
		b.Accounts[i].Seq += base
		n++
	}
	for i := range b.Transactions {
		b.Transactions[i].Seq += base
		n++
	}
	return n
}

func (r *Report) addValidated(v stages.Validated, max int) {
	r.Totals.Add(v.Totals)
	r.Skipped += v.Skipped
	r.addRejections(v.Rejections, int64(len(v.Rejections)), max)
}

func (r *Report) addApplied(a warehouse.Applied, max int) {
	// Rows rejected by the warehouse were counted as successes by validation.
	for _, c := range []struct{ total, rejected *stages.Count }{
		{&r.Totals.Accounts, &a.Rejected.Accounts}, {&r.Totals.Transactions, &a.Rejected.Transactions},
	} {
		c.total.Success -= c.rejected.Error
		c.total.Error += c.rejected.Error
	}
	// Skipped transactions were counted in the totals by validation.
	r.Totals.Transactions.Total -= a.Skipped
	r.Totals.Transactions.Success -= a.Skipped
	r.Skipped += a.Skipped
	r.addRejections(a.Rejections, a.Rejected.Accounts.Error+a.Rejected.Transactions.Error, max)
}

func (r *Report) addRejections(list []stages.Rejection, count int64, max int) {
	r.ErrorCount += count
	if room := max - len(r.Errors); room > 0 {
		r.Errors = append(r.Errors, list[:min(room, len(list))]...)
	}
}

func (r *Report) finish() {
	t := r.Totals
	success := t.Users.Success + t.Accounts.Success + t.Transactions.Success
	failed := t.Users.Error + t.Accounts.Error + t.Transactions.Error
	switch {
	case failed == 0:
		r.Status = StatusSuccess
	case success == 0:
		r.Status = StatusError
	default:
		r.Status = StatusPartialSuccess
	}
}
