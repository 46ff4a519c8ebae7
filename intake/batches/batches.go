// Package batches is the Push Data Source (the spec's PUT /api/v2/batches):
// it receives a JSON batch, checks it is a batch while writing it to disk,
// hands it to intake/jobs to be applied by the pipeline exactly once, then
// builds the batch's content (the callback payload) and delivers it to the
// batch's callback URL, signed, until the receiver takes it.
package batches

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flatfiler/flatfiler/intake/jobs"
	"github.com/flatfiler/flatfiler/intake/partner"
	"github.com/flatfiler/flatfiler/internal/failpoint"
	"github.com/flatfiler/flatfiler/parse"
	"github.com/flatfiler/flatfiler/warehouse"
)

// ErrTooLarge is a body over Config.MaxBytes.
var ErrTooLarge = errors.New("the batch is larger than the server's limit")

// ForbiddenError is a batch from a user's JWT naming other users.
type ForbiddenError struct {
	User   string
	Others []string
}

func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("this JWT is for user %q; the batch also names %s", e.User, strings.Join(e.Others, ", "))
}

// CallbackError is a callback URL flatfiler will not call.
type CallbackError struct{ Msg string }

func (e *CallbackError) Error() string { return "callback: " + e.Msg }

// Config wires a Service.
type Config struct {
	Jobs     *jobs.Manager
	Store    *warehouse.Store
	Partners *partner.Registry
	// Dir holds the built contents (the callback payloads).
	Dir      string
	MaxBytes int64 // default 256 MiB
	// Issuer is the iss of callback JWTs; default "flatfiler".
	Issuer string
	// RootCAs verify callback receivers; nil: the system's.
	Transport *http.Transport
	// AllowPrivate lets callbacks reach loopback and private addresses.
	AllowPrivate bool
	// Schedule is the wait before each callback attempt after the first
	// (Standard Webhooks'); after the last, the callback has failed.
	Schedule []time.Duration
	Timeout  time.Duration // per attempt; default 15 s
	Workers  int           // parser goroutines at receive
	Logger   *slog.Logger
	Metrics  *Metrics
	Faults   *failpoint.Set // tests' crash points; nil in production
}

// DefaultSchedule is Standard Webhooks' retry schedule, about three days.
var DefaultSchedule = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour,
	5 * time.Hour, 10 * time.Hour, 10 * time.Hour, 10 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// Service receives batches and delivers their callbacks.
type Service struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client
	wake   chan struct{}

	mu       sync.Mutex
	inflight map[string]bool
}

// New makes a Service; Run delivers.
func New(cfg Config) (*Service, error) {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 256 << 20
	}
	if cfg.Issuer == "" {
		cfg.Issuer = "flatfiler"
	}
	if cfg.Schedule == nil {
		cfg.Schedule = DefaultSchedule
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("batches: %w", err)
	}
	tr := cfg.Transport
	if tr == nil {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	}
	tr = tr.Clone()
	tr.Proxy = nil
	dialer := &net.Dialer{Timeout: cfg.Timeout, Control: addressCheck(cfg.AllowPrivate)}
	tr.DialContext = dialer.DialContext
	s := &Service{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1), inflight: map[string]bool{},
		client: &http.Client{Transport: tr, Timeout: cfg.Timeout,
			// A redirect is not the receiver taking the batch.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	cfg.Metrics.service = s
	return s, nil
}

// Finished is the jobs.Config hook: a batch became final.
func (s *Service) Finished(j jobs.Job) {
	if j.Source == jobs.SourceBatch {
		s.signal()
	}
}

func (s *Service) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Receive reads a batch body, checking it whole as it is written to disk,
// and enqueues it. user is the partner customer id of a user's JWT, or
// empty for the API key. The error is ErrTooLarge, parse.ErrEmptyBatch, a
// *parse.SyntaxError (malformed JSON), a *parse.ShapeError (JSON, not a
// batch), a *CallbackError, a *ForbiddenError, or the server's.
func (s *Service) Receive(ctx context.Context, p *partner.Partner, user, idempotencyKey string, body io.Reader) (jobs.Job, bool, error) {
	f, err := s.cfg.Jobs.Incoming()
	if err != nil {
		return jobs.Job{}, false, err
	}
	accepted := false
	defer func() {
		if !accepted {
			f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	sum := sha256.New()
	w := bufio.NewWriterSize(f, 1<<20)
	in := &limitedReader{r: body, left: s.cfg.MaxBytes}
	dec := parse.NewBatchDecoder(io.TeeReader(in, io.MultiWriter(w, sum)), parse.Options{Workers: s.cfg.Workers})
	type summary struct {
		users   []string
		records int64
	}
	var records int64
	others := map[string]bool{}
	var otherList []string
	err = parse.Each(ctx, dec, func(recs []parse.Record) summary {
		var out summary
		for _, r := range recs {
			u := r.User
			if user != "" { // only a user's JWT is held to its own user
				out.users = append(out.users, strings.TrimSpace(u.PartnerCustomerID))
			}
			out.records++
			for _, a := range u.Accounts {
				out.records += 1 + int64(len(a.Transactions))
			}
		}
		return out
	}, func(sm summary) error {
		records += sm.records
		for _, id := range sm.users {
			if id != user && !others[id] {
				others[id] = true
				otherList = append(otherList, fmt.Sprintf("%q", id))
			}
		}
		return nil
	})
	if errors.Is(err, ErrTooLarge) || in.over {
		return jobs.Job{}, false, ErrTooLarge
	}
	if err != nil {
		return jobs.Job{}, false, err
	}
	if len(otherList) > 0 {
		return jobs.Job{}, false, &ForbiddenError{User: user, Others: otherList[:min(len(otherList), 100)]}
	}
	callback := dec.Callback()
	if err := s.checkCallback(callback); err != nil {
		return jobs.Job{}, false, err
	}
	if err := w.Flush(); err != nil {
		return jobs.Job{}, false, fmt.Errorf("batches: %w", err)
	}
	if err := f.Sync(); err != nil {
		return jobs.Job{}, false, fmt.Errorf("batches: %w", err)
	}
	if err := f.Close(); err != nil {
		return jobs.Job{}, false, fmt.Errorf("batches: %w", err)
	}
	accepted = true
	size := s.cfg.MaxBytes - in.left
	j, dup, err := s.cfg.Jobs.AcceptBatch(ctx, p.ID, f.Name(), size, hex.EncodeToString(sum.Sum(nil)),
		jobs.BatchInfo{Callback: callback, IdempotencyKey: idempotencyKey, User: user, Records: records})
	if err != nil {
		_ = os.Remove(f.Name())
		return jobs.Job{}, false, err
	}
	if !dup {
		s.cfg.Metrics.Bytes.Add(float64(size))
		s.cfg.Metrics.Records.Add(float64(records))
	}
	return j, dup, nil
}

// checkCallback refuses what Deliver would never call: anything but an
// absolute https URL, and (unless allowed) a literal private address.
// Names are checked again at every connection (addressCheck).
func (s *Service) checkCallback(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return &CallbackError{Msg: fmt.Sprintf("%q is not a URL: %v", raw, err)}
	case u.Scheme != "https":
		return &CallbackError{Msg: fmt.Sprintf("%q: callbacks are sent over https only", raw)}
	case u.Host == "":
		return &CallbackError{Msg: fmt.Sprintf("%q has no host", raw)}
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && !s.cfg.AllowPrivate && !public(ip) {
		return &CallbackError{Msg: fmt.Sprintf("%q is a private or loopback address", raw)}
	}
	return nil
}

type limitedReader struct {
	r    io.Reader
	left int64
	over bool
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One byte more tells a body of exactly the limit from a longer one.
		var one [1]byte
		if n, _ := l.r.Read(one[:]); n > 0 {
			l.over = true
			return 0, ErrTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// Metrics of push batches.
type Metrics struct {
	Bytes    prometheus.Counter
	Records  prometheus.Counter
	Attempts *prometheus.CounterVec // outcome
	states   *prometheus.Desc
	pending  *prometheus.Desc
	oldest   *prometheus.Desc
	service  *Service
}

// NewMetrics registers the batch metrics on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Bytes:   prometheus.NewCounter(prometheus.CounterOpts{Name: "flatfiler_batch_bytes_total", Help: "Bytes of push batches accepted."}),
		Records: prometheus.NewCounter(prometheus.CounterOpts{Name: "flatfiler_batch_records_total", Help: "Records (users, accounts, transactions) of push batches accepted."}),
		Attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flatfiler_batch_callback_attempts_total",
			Help: "Callback deliveries tried, by outcome (delivered, retry, gone, failed)."}, []string{"outcome"}),
		states:  prometheus.NewDesc("flatfiler_batches", "Push batches known, by status (new, processing, success, partial-success, error).", []string{"status"}, nil),
		pending: prometheus.NewDesc("flatfiler_batch_callbacks_pending", "Callbacks not delivered yet (the callback queue).", nil, nil),
		oldest:  prometheus.NewDesc("flatfiler_batch_callback_oldest_pending_seconds", "Age of the oldest batch whose callback is pending; 0 when none is.", nil, nil),
	}
	for _, outcome := range []string{"delivered", "retry", "gone", "failed"} {
		m.Attempts.WithLabelValues(outcome)
	}
	if reg != nil {
		reg.MustRegister(m.Bytes, m.Records, m.Attempts, m)
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.states
	ch <- m.pending
	ch <- m.oldest
}

// Collect implements prometheus.Collector, reading the jobs at scrape time.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{}
	pending, oldest := 0, 0.0
	if m.service != nil {
		now := time.Now()
		for _, j := range m.service.cfg.Jobs.AllBatches() {
			counts[status(j)]++
			if j.Final() && j.Batch.Callback != "" && j.Batch.Outstanding() {
				pending++
				oldest = max(oldest, now.Sub(*j.FinishedAt).Seconds())
			}
		}
	}
	for _, st := range []string{"new", "processing", jobs.Success, jobs.PartialSuccess, jobs.Error} {
		ch <- prometheus.MustNewConstMetric(m.states, prometheus.GaugeValue, float64(counts[st]), st)
	}
	ch <- prometheus.MustNewConstMetric(m.pending, prometheus.GaugeValue, float64(pending))
	ch <- prometheus.MustNewConstMetric(m.oldest, prometheus.GaugeValue, oldest)
}

// MaxBytes is the largest body Receive takes.
func (s *Service) MaxBytes() int64 { return s.cfg.MaxBytes }

// Get returns a partner's batch; with a user's JWT, only a batch that
// user pushed.
func (s *Service) Get(partnerID, user, id string) (jobs.Job, bool) {
	j, ok := s.cfg.Jobs.GetBatch(partnerID, id)
	if !ok || (user != "" && j.Batch.User != user) {
		return jobs.Job{}, false
	}
	return j, true
}
