package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sourcegraph/conc"

	"github.com/flatfiler/flatfiler/api"
	"github.com/flatfiler/flatfiler/api/pgwire"
	"github.com/flatfiler/flatfiler/fixtures/gen"
	"github.com/flatfiler/flatfiler/intake/batches"
	"github.com/flatfiler/flatfiler/intake/harvest"
	"github.com/flatfiler/flatfiler/intake/inbox"
	"github.com/flatfiler/flatfiler/intake/jobs"
	"github.com/flatfiler/flatfiler/intake/partner"
	"github.com/flatfiler/flatfiler/intake/pull"
	"github.com/flatfiler/flatfiler/intake/sftpd"
	"github.com/flatfiler/flatfiler/internal/failpoint"
	"github.com/flatfiler/flatfiler/internal/health"
	"github.com/flatfiler/flatfiler/internal/objstore"
	"github.com/flatfiler/flatfiler/pipeline"
	"github.com/flatfiler/flatfiler/warehouse"
)

// serveConfig is what `flatfiler serve` is told.
type serveConfig struct {
	Data     string
	SFTPAddr string
	// SQLAddr is the analysts' SQL endpoint (the Postgres wire protocol);
	// empty: off. SQLTLSCert and SQLTLSKey are required off loopback.
	SQLAddr, SQLTLSCert, SQLTLSKey string
	SQLStatementTimeout            time.Duration
	SQLMaxQueries                  int
	SQLMaxResultSize               int64
	HTTPAddr                       string
	MemoryLimit                    string
	CommitMemoryLimit              string
	// ReadMemoryLimit is DuckDB's pool while no file loads: the API's
	// cache (warehouse.Options).
	ReadMemoryLimit string
	// MinFreeSpace is the free space of the data directory under which
	// the server is not ready (GET /readyz).
	MinFreeSpace int64
	// CheckpointAfter: a file's commit is followed by a checkpoint once the
	// warehouse's log is this large.
	CheckpointAfter int64
	// DuckDBThreads is DuckDB's thread count.
	DuckDBThreads int
	// Cores bound the API's reads running at once and a job's parser
	// goroutines; default GOMAXPROCS.
	Cores        int
	Workers      int
	MaxFileSize  int64
	Quota        int64
	IdleTimeout  time.Duration
	Retention    time.Duration
	Grace        time.Duration
	FailureDelay time.Duration
	// ArchiveStore, if set, is where processed flat files go instead of
	// staying in the archive folder (objstore.Open's location).
	ArchiveStore string
	// RetryAfter is the first wait of a job whose attempt failed for the
	// server's storage; it doubles up to ten minutes.
	RetryAfter time.Duration
	// Push batches: the body limit, the callbacks' trusted CAs (a PEM
	// file added to the system's), whether callbacks may reach private
	// addresses, their retry schedule, and their JWTs' iss.
	MaxBatchSize         int64
	CallbackCA           string
	CallbackAllowPrivate bool
	// HarvestAllowPrivate lets partners' pull endpoints be on loopback and
	// private addresses.
	HarvestAllowPrivate bool
	CallbackSchedule    []time.Duration
	Issuer              string
	Logger              *slog.Logger
	Faults              *failpoint.Set
	// node, in a cluster, owns what outlives this node's turns as the
	// leader: partners, inbox, SFTP and the listeners (cluster.go); shard
	// is the one this service writes, an index in node.shards.
	node  *node
	shard int
}

// service is a running server: SFTP, HTTP, job workers, one warehouse.
type service struct {
	cfg      serveConfig
	store    *warehouse.Store
	partners *partner.Registry
	inbox    *inbox.Inbox
	sftp     *sftpd.Server
	jobs     *jobs.Manager
	batches  *batches.Service
	harvests *pull.Runs
	sql      *pgwire.Server
	sqlLn    net.Listener
	http     *http.Server
	sftpLn   net.Listener
	httpLn   net.Listener
	demo     *partner.Credentials // set when this start created the demo partner
	cancel   context.CancelFunc
	wg       conc.WaitGroup
	done     chan struct{}
}

// adminFile tells `flatfiler sql` how to reach a server that holds the
// warehouse open.
const adminFile = "admin.json"

type adminInfo struct {
	HTTPAddr string `json:"http_addr"`
	Token    string `json:"token"`
	// Shard, in a cluster, names the shard whose warehouse this is: the
	// node at HTTPAddr may write several.
	Shard string `json:"shard,omitempty"`
}

// startService opens everything under cfg.Data and starts serving.
func startService(ctx context.Context, cfg serveConfig) (_ *service, err error) {
	log := cfg.Logger
	s := &service{cfg: cfg, done: make(chan struct{})}
	closers := []func(){}
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, err
	}
	if cfg.node != nil {
		s.partners, s.inbox = cfg.node.partners, cfg.node.inbox
	} else if s.partners, err = partner.Open(filepath.Join(cfg.Data, "partners")); err != nil {
		return nil, err
	}
	if s.partners.Len() == 0 {
		creds, err := s.partners.Add("demo", partner.NewOptions{Domain: "demo.flatfiler.local"})
		switch {
		case errors.Is(err, partner.ErrExists): // another shard's leader made it first
		case err != nil:
			return nil, err
		default:
			s.demo = &creds
		}
	}
	if cfg.node == nil {
		if s.inbox, err = inbox.Open(filepath.Join(cfg.Data, "sftp")); err != nil {
			return nil, err
		}
		closers = append(closers, func() { s.inbox.Close() })
	}
	if s.store, err = warehouse.Open(ctx, filepath.Join(cfg.Data, "warehouse.duckdb"), warehouse.Options{
		MemoryLimit: cfg.MemoryLimit, CommitMemoryLimit: cfg.CommitMemoryLimit, ReadMemoryLimit: cfg.ReadMemoryLimit, Threads: cfg.DuckDBThreads, AccountDirectory: true, MaxConcurrentReads: cfg.Cores, Logger: log, Faults: cfg.Faults,
		CheckpointAfter: cfg.CheckpointAfter,
	}); err != nil {
		return nil, err
	}
	closers = append(closers, func() { s.store.Close() })

	// root holds what every shard of a cluster shares; owns says which
	// partners this warehouse holds.
	root, owns := cfg.Data, func(string) bool { return true }
	// One registry for everything, as Prometheus itself does: no globals.
	// A node may write several shards: their metrics carry the shard's
	// name, and the Go runtime's are the node's own.
	reg := prometheus.NewRegistry()
	var regr prometheus.Registerer = reg
	if cfg.node != nil {
		root = cfg.node.root
		owns = func(id string) bool { return cfg.node.shardOf(id) == cfg.shard }
		if name := cfg.node.shards[cfg.shard].name; name != "" {
			regr = prometheus.WrapRegistererWith(prometheus.Labels{"shard": name}, reg)
		}
	} else {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	freshness := partner.NewFreshness(s.partners, s.store.LastDelivered)
	freshness.Owns = owns
	regr.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "flatfiler_commit_retries_total",
			Help: "File commits run again with API reads held off, after DuckDB ran out of memory.",
		}, func() float64 { return float64(s.store.CommitRetries()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "flatfiler_warehouse_reopens_total",
			Help: "Times the warehouse was closed and opened again after DuckDB invalidated it (a failed checkpoint, an internal error).",
		}, func() float64 { return float64(s.store.Reopens()) }),
		freshness,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flatfiler_duckdb_memory_bytes",
			Help: "Memory DuckDB's buffer manager holds: its pool (--read-memory-limit while nothing loads, --memory-limit while a file does); -1: unknown.",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return float64(s.store.MemoryUsage(ctx))
		}))
	dataDir := health.DataDir{Path: cfg.Data, MinFree: uint64(cfg.MinFreeSpace)}
	regr.MustRegister(dataDir.Collectors()...)
	if cfg.node == nil {
		// A single server is a cluster of one shard that it always leads.
		leader := leaderGauge()
		leader.Set(1)
		reg.MustRegister(leader, shardsGauge(1))
	}
	limits := inbox.Limits{MaxFileSize: cfg.MaxFileSize, Quota: cfg.Quota}
	box := func(id string) (*inbox.Box, error) {
		lim := limits
		if p, ok := s.partners.Get(id); ok {
			if p.MaxFileSize > 0 {
				lim.MaxFileSize = p.MaxFileSize
			}
			if p.QuotaBytes > 0 {
				lim.Quota = p.QuotaBytes
			}
		}
		return s.inbox.Box(id, lim)
	}
	rules, err := pipeline.RulesFiles(filepath.Join(root, "partners"))
	if err != nil {
		return nil, err
	}
	engine, err := pipeline.LoadEnrichment(ctx, s.store, rules)
	if err != nil {
		return nil, err
	}
	pipe := &pipeline.Pipeline{Store: s.store, Metrics: pipeline.NewMetrics(regr), Enrich: engine}
	var offload jobs.ArchiveStore
	if cfg.ArchiveStore != "" {
		if offload, err = objstore.Open(ctx, cfg.ArchiveStore); err != nil {
			return nil, fmt.Errorf("--archive-store: %w", err)
		}
	}
	if s.jobs, err = jobs.Open(ctx, jobs.Config{
		Dir: filepath.Join(cfg.Data, "jobs"), Box: box, Pipeline: pipe, Workers: cfg.Workers, ParseWorkers: cfg.Cores,
		Retention: cfg.Retention, Grace: cfg.Grace, RetryAfter: cfg.RetryAfter, Logger: log, Metrics: jobs.NewMetrics(regr),
		Faults: cfg.Faults, Offload: offload,
		// Set before the jobs run: a batch become final has its callback due.
		Finished: func(j jobs.Job) { s.batches.Finished(j) },
	}); err != nil {
		return nil, err
	}
	transport, err := callbackTransport(cfg.CallbackCA)
	if err != nil {
		return nil, err
	}
	if s.batches, err = batches.New(batches.Config{
		Jobs: s.jobs, Store: s.store, Partners: s.partners, Dir: filepath.Join(cfg.Data, "batches"),
		MaxBytes: cfg.MaxBatchSize, Issuer: cfg.Issuer, Transport: transport, AllowPrivate: cfg.CallbackAllowPrivate,
		Schedule: cfg.CallbackSchedule, Workers: cfg.Cores, Logger: log, Metrics: batches.NewMetrics(regr), Faults: cfg.Faults,
	}); err != nil {
		return nil, err
	}
	if cfg.node == nil {
		if s.sftp, err = newSFTP(cfg, s.partners, s.inbox, reg); err != nil {
			return nil, err
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.harvests = &pull.Runs{Context: runCtx, Dir: filepath.Join(cfg.Data, "harvests"), H: &pull.Harvester{
		Pipeline: pipe, Store: s.store, AllowPrivate: cfg.HarvestAllowPrivate, Logger: log, Metrics: pull.NewMetrics(regr),
	}, Config: func(id string) (*harvest.Config, bool) {
		p, ok := s.partners.Get(id)
		if !ok || p.Harvest == nil {
			return nil, false
		}
		return p.Harvest, true
	}}
	if err := s.harvests.Open(ctx); err != nil {
		cancel()
		return nil, err
	}
	token := make([]byte, 32)
	_, _ = rand.Read(token)
	apiServer := &api.Server{
		Partners: s.partners, Jobs: s.jobs, Batches: s.batches, Pipeline: pipe, Harvests: s.harvests, Store: s.store, Gatherer: reg,
		AdminToken: hex.EncodeToString(token), Logger: log, Metrics: api.NewMetrics(regr), Enrich: engine,
		DataDir: cfg.Data,
		Health: &health.Checker{Checks: []health.Check{
			{Name: "warehouse", Run: s.store.Ping},
			{Name: "jobs", Run: s.jobs.Working},
			{Name: "data", Run: dataDir.Check},
		}},
	}
	if cfg.SQLAddr != "" {
		if err := s.startSQL(); err != nil {
			return nil, err
		}
		closers = append(closers, func() { s.sqlLn.Close() })
	}
	if cfg.node == nil {
		if s.sftpLn, err = net.Listen("tcp", cfg.SFTPAddr); err != nil {
			return nil, fmt.Errorf("sftp: %w", err)
		}
		closers = append(closers, func() { s.sftpLn.Close() })
		if s.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("http: %w", err)
		}
		closers = append(closers, func() { s.httpLn.Close() })
	}
	httpAddr := cfg.HTTPAddr
	if s.httpLn != nil {
		httpAddr = s.httpLn.Addr().String()
	} else if cfg.node != nil {
		httpAddr = cfg.node.httpAdvertised // what a command on another node reaches
	}
	shardName := ""
	if cfg.node != nil {
		shardName = cfg.node.shards[cfg.shard].name
	}
	admin, _ := json.Marshal(adminInfo{HTTPAddr: httpAddr, Token: apiServer.AdminToken, Shard: shardName})
	if err := os.WriteFile(filepath.Join(cfg.Data, adminFile), admin, 0o600); err != nil {
		return nil, err
	}

	if cfg.node != nil {
		cfg.node.lead(cfg.shard, leadership{api: apiServer.Handler(), health: apiServer.Health, metrics: reg})
	} else {
		s.http = &http.Server{Handler: apiServer.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		s.wg.Go(func() {
			if err := s.http.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("http server", "err", err)
			}
		})
		s.wg.Go(func() {
			if err := s.sftp.Serve(runCtx, s.sftpLn); err != nil {
				log.Error("sftp server", "err", err)
			}
		})
	}
	if s.sql != nil {
		s.wg.Go(func() {
			if err := s.sql.Serve(s.sqlLn); err != nil && !errors.Is(err, net.ErrClosed) {
				log.Error("sql endpoint", "err", err)
			}
		})
	}
	s.wg.Go(func() { s.jobs.Run(runCtx) })
	s.wg.Go(func() { s.batches.Run(runCtx) })
	s.wg.Go(func() {
		s.harvests.Schedule(runCtx, func() map[string]*harvest.Config {
			out := map[string]*harvest.Config{}
			for _, id := range s.partners.IDs() {
				if p, ok := s.partners.Get(id); ok && p.Harvest != nil && owns(id) {
					out[id] = p.Harvest
				}
			}
			return out
		})
	})
	go func() {
		select {
		case <-ctx.Done():
			s.stop()
		case <-s.done:
		}
	}()
	return s, nil
}

// stop shuts down in the order that loses nothing: no new notifications or
// uploads, then the running job finishes or goes back to the queue, then
// the warehouse closes cleanly.
func (s *service) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	log := s.cfg.Logger
	log.Info("shutting down: no new uploads or notifications")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.cfg.node != nil {
		s.cfg.node.follow(s.cfg.shard) // requests go to the next leader, when there is one
	} else {
		_ = s.http.Shutdown(ctx)
		s.sftp.Shutdown(ctx)
	}
	if s.sql != nil {
		_ = s.sql.Close()
	}
	s.cancel() // jobs: the running one has its grace period; harvests stop
	s.wg.Wait()
	s.harvests.Wait()
	_ = os.Remove(filepath.Join(s.cfg.Data, adminFile))
	if s.cfg.node == nil {
		s.inbox.Close()
	}
	if err := s.store.Close(); err != nil {
		log.Error("closing the warehouse", "err", err)
	}
	log.Info("stopped")
	close(s.done)
}

func (s *service) Done() <-chan struct{} { return s.done }

// envName is the environment variable that sets a flag.
func envName(flagName string) string {
	return "FLATFILER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets flags from FLATFILER_* variables; the command line, parsed
// after, wins.
func applyEnv(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
			}
		}
	})
	return err
}

// sizeFlag is a byte size flag that accepts 10GiB, 500MB or plain bytes.
type sizeFlag struct{ n *int64 }

func (f sizeFlag) String() string {
	if f.n == nil {
		return "0"
	}
	return fmt.Sprint(*f.n)
}

func (f sizeFlag) Set(s string) error {
	n, err := gen.ParseSize(s)
	if err != nil {
		return err
	}
	*f.n = n
	return nil
}

func serveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := serveConfig{MaxFileSize: 16 << 30, Quota: 64 << 30, CheckpointAfter: 16 << 20}
	fs.StringVar(&cfg.Data, "data", "./data", "data directory: warehouse, SFTP folders, jobs, host keys, partners")
	fs.StringVar(&cfg.SFTPAddr, "sftp-addr", "127.0.0.1:2022", "SFTP listen address")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8080", "HTTP listen address (API and /metrics)")
	fs.StringVar(&cfg.SQLAddr, "sql-addr", "127.0.0.1:5433", "the analysts' SQL endpoint (Postgres wire protocol; database warehouse); empty: off")
	fs.StringVar(&cfg.SQLTLSCert, "sql-tls-cert", "", "TLS certificate of the SQL endpoint (PEM); required off loopback")
	fs.StringVar(&cfg.SQLTLSKey, "sql-tls-key", "", "its private key (PEM)")
	fs.DurationVar(&cfg.SQLStatementTimeout, "sql-statement-timeout", 60*time.Second, "longest an analyst's statement runs")
	fs.IntVar(&cfg.SQLMaxQueries, "sql-max-queries", 1, "analysts' statements running at once (each uses a core; the reporting API keeps the rest)")
	memory := addMemoryFlags(fs)
	fs.StringVar(&cfg.ReadMemoryLimit, "read-memory-limit", "1GB", "DuckDB memory limit while no file or batch loads: the reporting API's and analysts' cache (a load lowers it to --memory-limit while it lasts)")
	fs.Var(sizeFlag{&cfg.CheckpointAfter}, "checkpoint-after", "after a file is committed (durable in DuckDB's log), checkpoint the warehouse if its log is this large")
	fs.IntVar(&cfg.DuckDBThreads, "duckdb-threads", 1, "DuckDB threads: the API's reads are small, and run fastest one thread each, side by side (a file's load is no slower)")
	fs.IntVar(&cfg.Workers, "workers", 1, "jobs run at once (one partner's jobs always run in order, one at a time)")
	fs.Var(sizeFlag{&cfg.MaxFileSize}, "max-file-size", "largest file a partner may upload, unless the partner sets its own")
	fs.Var(sizeFlag{&cfg.Quota}, "quota", "bytes a partner's SFTP folder may hold, unless the partner sets its own")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 10*time.Minute, "close SFTP sessions with no request for this long (transfers count as activity)")
	fs.StringVar(&cfg.ArchiveStore, "archive-store", "", "keep processed flat files in S3-compatible object storage instead of the archive folder: s3://BUCKET/PREFIX[?endpoint=HOST:PORT&region=R&ca=FILE], credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	fs.DurationVar(&cfg.Retention, "archive-retention", 30*24*time.Hour, "keep processed files and finished jobs this long")
	fs.DurationVar(&cfg.Grace, "shutdown-grace", 10*time.Second, "at shutdown, let a running job finish for this long before it is stopped and queued again")
	fs.Int64Var(&cfg.MaxBatchSize, "max-batch-size", 256<<20, "largest push batch body (PUT /api/v2/batches), bytes; larger ones are refused with 413")
	fs.StringVar(&cfg.CallbackCA, "callback-ca", "", "PEM file of CAs trusted for batch callbacks, besides the system's")
	fs.BoolVar(&cfg.CallbackAllowPrivate, "callback-allow-private", false, "let batch callbacks reach loopback and private addresses (tests, private networks)")
	fs.BoolVar(&cfg.HarvestAllowPrivate, "harvest-allow-private", false, "let partners' pull endpoints be on loopback and private addresses (tests, demos, private networks)")
	schedule := fs.String("callback-schedule", "", "waits between a batch callback's attempts, comma-separated (default Standard Webhooks': 5s,5m,30m,2h,5h,10h,10h,10h,10h,10h)")
	fs.StringVar(&cfg.Issuer, "issuer", "flatfiler", "iss of the JWTs batch callbacks carry")
	fs.DurationVar(&cfg.RetryAfter, "retry-after", 10*time.Second, "a job not applied for the server's storage (full disk, I/O error) runs again after this long, doubling up to 10m; the file is kept")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text (key=value) or json, one object a line")
	minFreeSpace := fs.String("min-free-space", "1GiB", "free space of the data directory under which GET /readyz answers 503")
	maxResult := fs.String("sql-max-result-size", "4GiB", "largest result of an analyst's statement, as it waits on disk for the client (0: no limit)")
	var cc clusterConfig
	fs.StringVar(&cc.Postgres, "postgres", "", "run as one node of a cluster sharing --data (a directory every node mounts): PostgreSQL URL of the cluster's lease; the node holding it writes the warehouse, the others forward to it (docs/scale-out.md); empty: a single server")
	fs.StringVar(&cc.Node, "node", defaultNodeName(), "this node's name in the cluster")
	fs.DurationVar(&cc.LeaseTTL, "lease-ttl", 15*time.Second, "with --postgres: how long the warehouse lease lasts unrenewed, so how soon another node takes over from a dead one")
	fs.IntVar(&cc.Shards, "shards", 1, "with --postgres: warehouses the partners are spread over, each written by one node at a time (run shards + spare nodes); fixed at the cluster's first start")
	fs.StringVar(&cc.Advertise, "advertise-host", "", "with --postgres: the host other nodes reach this one at (default the listen address's, or the host name for a wildcard)")
	cpuProfile := fs.String("cpuprofile", "", "write a Go CPU profile of the whole run to this file (for performance work)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: flatfiler serve [flags]\n\nRuns the SFTP server, the HTTP API and the job workers. Every flag can also be set\nas an environment variable: --sftp-addr as %s.\n\n", envName("sftp-addr"))
		fs.PrintDefaults()
	}
	if err := applyEnv(fs); err != nil {
		fmt.Fprintf(stderr, "flatfiler serve: %v\n", err)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if cfg.MemoryLimit, cfg.CommitMemoryLimit, err = memory.limits(); err != nil {
		fmt.Fprintf(stderr, "flatfiler serve: %v\n", err)
		return 2
	}
	if read, err := gen.ParseSize(cfg.ReadMemoryLimit); err != nil {
		fmt.Fprintf(stderr, "flatfiler serve: --read-memory-limit: %v\n", err)
		return 2
	} else if usual, _ := gen.ParseSize(cfg.MemoryLimit); read < usual {
		cfg.ReadMemoryLimit = cfg.MemoryLimit
	}
	if *schedule != "" {
		for _, part := range strings.Split(*schedule, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(part))
			if err != nil {
				fmt.Fprintf(stderr, "flatfiler serve: --callback-schedule: %v\n", err)
				return 2
			}
			cfg.CallbackSchedule = append(cfg.CallbackSchedule, d)
		}
	}
	// DuckDB runs each query inside a cgo call, and Go counts a goroutine in
	// a cgo call as holding one of its GOMAXPROCS Ps until the runtime takes
	// the P back. With one P per core and a query on each core, the
	// goroutines that read requests and write responses waited: under make
	// bench-api 1 to 2% of requests took 150 to 500 ms at the client while
	// every handler but a few took under 100 ms. With two Ps per core none
	// took over 150 ms. Queries still run one per core (Cores).
	cfg.Cores = runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(2 * cfg.Cores)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "flatfiler serve: --log-level: %v\n", err)
		return 2
	}
	switch *logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	default:
		fmt.Fprintf(stderr, "flatfiler serve: --log-format: %q is neither text nor json\n", *logFormat)
		return 2
	}
	minFree, err := gen.ParseSize(*minFreeSpace)
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler serve: --min-free-space: %v\n", err)
		return 2
	}
	cfg.MinFreeSpace = minFree
	if cfg.SQLMaxResultSize, err = gen.ParseSize(*maxResult); err != nil {
		fmt.Fprintf(stderr, "flatfiler serve: --sql-max-result-size: %v\n", err)
		return 2
	}
	if cfg.Faults, err = faultPoints(stderr); err != nil {
		fmt.Fprintf(stderr, "flatfiler serve: %s: %v\n", faultsEnv, err)
		return 2
	}

	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "flatfiler serve: %v\n", err)
			return 1
		}
		defer stop()
	}
	if cc.Postgres != "" {
		if cc.LeaseTTL < time.Second {
			fmt.Fprintf(stderr, "flatfiler serve: --lease-ttl %s: at least 1s\n", cc.LeaseTTL)
			return 2
		}
		if err := runNode(ctx, cfg, cc, stdout); err != nil {
			fmt.Fprintf(stderr, "flatfiler serve: %v\n", err)
			return 1
		}
		return 0
	}
	s, err := startService(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler serve: %v\n", err)
		return 1
	}
	s.printBanner(stdout)
	<-s.Done()
	return 0
}

func (s *service) printBanner(w io.Writer) {
	fmt.Fprintf(w, "flatfiler serve: data in %s\n", s.cfg.Data)
	fmt.Fprintf(w, "  SFTP  %s\n", s.sftpLn.Addr())
	for _, fp := range s.sftp.Fingerprints() {
		fmt.Fprintf(w, "        host key %s\n", fp)
	}
	fmt.Fprintf(w, "  HTTP  http://%s  (POST /api/v2/uploads/received, GET /api/v2/uploads, PUT /api/v2/batches, the reporting API /api/v2/users/..., GET /metrics)\n", s.httpLn.Addr())
	if s.sqlLn != nil {
		fmt.Fprintf(w, "  SQL   postgres://ANALYST@%s/warehouse  (analysts: flatfiler analyst add NAME --all-partners)\n", s.sqlLn.Addr())
	}
	fmt.Fprintf(w, "  partners: %s\n", strings.Join(s.partners.IDs(), ", "))
	printDemo(w, s.demo, s.sftpLn.Addr().String(), s.httpLn.Addr().String())
}

// printDemo shows the demo partner's secrets, the once they exist: when
// this start created it.
func printDemo(w io.Writer, c *partner.Credentials, sftpAddr, httpAddr string) {
	if c == nil {
		return
	}
	sftpHost, sftpPort, _ := net.SplitHostPort(sftpAddr)
	fmt.Fprintf(w, "\nFirst start: created partner %q. Its secrets are shown this once:\n", c.PartnerID)
	fmt.Fprintf(w, "  API key        %s\n  SFTP user      %s\n  SFTP password  %s\n", c.APIKey, c.SFTPUser, c.SFTPPassword)
	fmt.Fprintf(w, "\nDeliver the spec's example (in another terminal):\n")
	fmt.Fprintf(w, "  FLATFILER_API_KEY=%s FLATFILER_SFTP_PASSWORD=%s \\\n    scripts/deliver.sh fixtures/spec/combined.xml\n", c.APIKey, c.SFTPPassword)
	fmt.Fprintf(w, "or by hand: sftp -P %s %s@%s, then curl -X POST 'http://%s/api/v2/uploads/received?api_key=...&filenames=...&hashes=...'\n",
		sftpPort, c.SFTPUser, sftpHost, httpAddr)
}

// newSFTP makes the SFTP server of the partners' inboxes.
func newSFTP(cfg serveConfig, partners *partner.Registry, ib *inbox.Inbox, reg prometheus.Registerer) (*sftpd.Server, error) {
	limits := inbox.Limits{MaxFileSize: cfg.MaxFileSize, Quota: cfg.Quota}
	return sftpd.New(partners, ib, sftpd.Options{
		HostKeyDir: filepath.Join(cfg.Data, "host_keys"), BanFile: sftpd.BanFile(cfg.Data), IdleTimeout: cfg.IdleTimeout, Limits: limits,
		FailureDelay: cfg.FailureDelay, Logger: cfg.Logger, Metrics: sftpd.NewMetrics(reg),
	})
}

// callbackTransport trusts the system's CAs and those in the PEM file caFile.
func callbackTransport(caFile string) (*http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile == "" {
		return tr, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--callback-ca: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--callback-ca: %s holds no PEM certificate", caFile)
	}
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return tr, nil
}

// startSQL opens the analysts' SQL endpoint.
func (s *service) startSQL() error {
	cfg := s.cfg
	root := cfg.Data
	if cfg.node != nil {
		root = cfg.node.root
	}
	analysts, err := pgwire.OpenAnalysts(filepath.Join(root, "analysts"))
	if err != nil {
		return err
	}
	var tlsConfig *tls.Config
	if cfg.SQLTLSCert != "" || cfg.SQLTLSKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.SQLTLSCert, cfg.SQLTLSKey)
		if err != nil {
			return fmt.Errorf("--sql-tls-cert/--sql-tls-key: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if s.sql, err = pgwire.New(pgwire.Config{Store: s.store, Analysts: analysts, TLS: tlsConfig,
		StatementTimeout: cfg.SQLStatementTimeout, MaxQueries: cfg.SQLMaxQueries, MaxResultBytes: cfg.SQLMaxResultSize, Logger: cfg.Logger}); err != nil {
		return err
	}
	if cfg.node != nil {
		s.sqlLn = cfg.node.sqlForLeader(cfg.shard)
		return nil
	}
	if s.sqlLn, err = net.Listen("tcp", cfg.SQLAddr); err != nil {
		return fmt.Errorf("sql: %w", err)
	}
	if tcp, ok := s.sqlLn.Addr().(*net.TCPAddr); tlsConfig == nil && (!ok || !tcp.IP.IsLoopback()) {
		s.sqlLn.Close()
		return fmt.Errorf("--sql-addr %s is not loopback: give --sql-tls-cert and --sql-tls-key (analysts' passwords would cross in clear text)", cfg.SQLAddr)
	}
	return nil
}
