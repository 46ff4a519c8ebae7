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
	rep := &Report{File: name, Type: opts.Type, Outcome: Outcome{Errors: []stages.Rejection{}}}
	in := &countingReader{r: r}

	err := p.run(ctx, name, in, opts, rep)
	rep.Bytes = in.n.Load()
	rep.Seconds = time.Since(started).Seconds()
	p.Metrics.Bytes.Add(float64(rep.Bytes))
	p.Metrics.Stage.WithLabelValues("file").Observe(rep.Seconds)
	if err != nil {
		rep.Applied = false
		rep.Status = StatusError
		rep.Fatal = fmt.Sprintf("%s: %v", filepath.Base(name), err)
		rep.Retryable = errors.Is(err, warehouse.ErrStorage)
		p.Metrics.Files.WithLabelValues(rep.Status).Inc()
		log.Error("file not applied", "file", name, "partner", opts.Partner, "err", err)
		return rep, fmt.Errorf("%s: %w", name, err)
	}
	p.Metrics.Files.WithLabelValues(rep.Status).Inc()
	for _, k := range []struct {
		kind string
		c    stages.Count
	}{{"user", rep.Totals.Users}, {"account", rep.Totals.Accounts}, {"transaction", rep.Totals.Transactions}} {
		p.Metrics.Records.WithLabelValues(k.kind, "success").Add(float64(k.c.Success))
		p.Metrics.Records.WithLabelValues(k.kind, "error").Add(float64(k.c.Error))
	}
	p.Metrics.Records.WithLabelValues("transaction", "skipped").Add(float64(rep.Skipped))
	log.Info("file applied", "file", name, "partner", opts.Partner, "type", rep.Type, "status", rep.Status,
		"records", rep.Records(), "errors", rep.ErrorCount, "bytes", rep.Bytes, "seconds", rep.Seconds)
	return rep, nil
}

func (p *Pipeline) run(ctx context.Context, name string, in *countingReader, opts Options, rep *Report) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	enricher := newEnrichStage(p.Enrich, opts.Partner, p.Metrics)
	load, err := p.Store.Begin(ctx, warehouse.LoadOptions{
		Partner: opts.Partner, AsOf: opts.AsOf, Source: filepath.Base(name), MaxRejections: opts.MaxErrors,
		Enrichments: enricher.numbered(),
	})
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			load.Rollback()
		}
	}()

	// The loader stages a batch while the parser fills the next; the
	// handoff is unbuffered, so at most two batches are in memory.
	batches := make(chan *stages.Batch)
	loaded := make(chan error, 1)
	go func() {
		var loadErr error
		for b := range batches {
			if loadErr != nil {
				continue
			}
			t := time.Now()
			applied, err := load.Apply(ctx, b)
			p.Metrics.Stage.WithLabelValues("load").Observe(time.Since(t).Seconds())
			if err != nil {
				loadErr = err
				cancel()
				continue
			}
			rep.addApplied(applied, opts.MaxErrors)
		}
		loaded <- loadErr
	}()

	dec := parse.NewDecoder(in, parse.Options{Workers: opts.Workers, Type: opts.Type})
	validator := stages.Validator{Type: opts.Type}
	if opts.Format == PushBatch {
		dec = parse.NewBatchDecoder(in, parse.Options{Workers: opts.Workers})
		validator = stages.Validator{Type: parse.Combined, Batch: true}
		rep.Type = parse.Combined
	}
	var base stages.Seq
	nested := false
	cur, curRows := &stages.Batch{}, 0
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
		n := shiftSeq(&v.Batch, base)
		base += n
		cur.Users = append(cur.Users, v.Batch.Users...)
		cur.Accounts = append(cur.Accounts, v.Batch.Accounts...)
		cur.Transactions = append(cur.Transactions, v.Batch.Transactions...)
		curRows += v.Batch.Rows()
		rep.addValidated(v, opts.MaxErrors)
		if curRows >= opts.BatchRows {
			select {
			case batches <- cur:
			case <-ctx.Done():
				return ctx.Err()
			}
			cur, curRows = &stages.Batch{}, 0
		}
		if opts.OnProgress != nil {
			opts.OnProgress(in.n.Load(), rep.Records())
		}
		return nil
	}
	parseErr := parse.Each(ctx, dec, work, deliver)
	if parseErr == nil && curRows > 0 {
		batches <- cur
	}
	close(batches)
	loadErr := <-loaded
	if loadErr != nil {
		return loadErr
	}
	if parseErr != nil {
		return parseErr
	}
	if rep.Type == "" {
		rep.Type, _ = dec.Root()
		if rep.Type == parse.Combined && !nested {
			rep.Type = parse.Users
		}
	}
	rep.finish()
	// Parsing is over and its buffers are garbage: hand their pages back
	// before the warehouse's heaviest phase, so peak memory is one or the other.
	debug.FreeOSMemory()
	t := time.Now()
	err = load.Commit(ctx, warehouse.IngestRecord{FileType: string(rep.Type), Status: rep.Status, Bytes: in.n.Load(), Report: rep, JobID: opts.JobID})
	p.Metrics.Stage.WithLabelValues("commit").Observe(time.Since(t).Seconds())
	if err != nil {
		return err
	}
	committed = true
	rep.Applied = true
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
