package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/flatfiler/flatfiler/api"
	"github.com/flatfiler/flatfiler/intake/inbox"
	"github.com/flatfiler/flatfiler/intake/partner"
	"github.com/flatfiler/flatfiler/intake/sftpd"
	"github.com/flatfiler/flatfiler/internal/cluster"
	"github.com/flatfiler/flatfiler/internal/health"
)

// warehouseLease is the lease that makes a node the writer of a cluster's
// single warehouse; with --shards, each shard has its own, shard/NAME.
const warehouseLease = "warehouse"

// shard is one warehouse of a cluster, with its lease and data directory.
type shard struct {
	name, lease, dir string
}

// clusterShards lays the shards out: one, the data directory itself, or
// shards/NAME/ under it, each a data directory of its own for the
// warehouse, jobs, batches and harvests; partners, SFTP folders, host keys
// and analysts stay at the top, shared.
func clusterShards(data string, n int) []shard {
	if n <= 1 {
		return []shard{{name: "", lease: warehouseLease, dir: data}}
	}
	out := make([]shard, n)
	for i := range out {
		name := fmt.Sprintf("s%d", i)
		out[i] = shard{name: name, lease: "shard/" + name, dir: filepath.Join(data, "shards", name)}
	}
	return out
}

// clusterConfig is what `serve --postgres` adds.
type clusterConfig struct {
	Postgres string
	Node     string
	LeaseTTL time.Duration
	// Shards is how many warehouses the cluster's partners are spread
	// over; a node writes one, and more only while no other node
	// takes them: plan nodes = shards + spares.
	Shards int
	// Advertise is the host other nodes reach this one at; default the
	// listen address's, or the host name when that is a wildcard.
	Advertise string
}

// node is one process of a cluster sharing a data directory. It runs the
// SFTP server and holds the HTTP and SQL listeners for its whole life;
// for each shard whose lease it holds it runs a service (serve.go), and it
// forwards requests for the other shards to their leaders.
type node struct {
	log      *slog.Logger
	root     string  // the shared data directory
	instance string  // the node's name and this process's own suffix: what holds leases
	shards   []shard // the cluster's warehouses
	dir      *cluster.Directory
	partners *partner.Registry
	inbox    *inbox.Inbox
	sftp     *sftpd.Server
	// metrics is what the node counts whatever it leads, runtime the Go
	// and process collectors: the services, one per shard led, add theirs
	// with the shard's name.
	metrics, runtime *prometheus.Registry
	leader           prometheus.Gauge

	sftpLn, httpLn, sqlLn net.Listener
	httpAdvertised        string // where other nodes, and commands, reach httpLn
	http                  *http.Server
	forward, scrape       http.Handler
	ready                 *health.Checker
	wg                    sync.WaitGroup

	mu      sync.Mutex
	leading map[int]*leadership // by shard index
}

// leadership is a shard this node writes: its service's API, readiness,
// metrics, and the listener its SQL endpoint serves.
type leadership struct {
	api     http.Handler
	health  *health.Checker
	metrics prometheus.Gatherer
	sql     *cluster.Handoff
}

// shardHeader names, on an /admin/ request (flatfiler sql, export,
// backup), the shard whose warehouse it is for.
const shardHeader = "Flatfiler-Shard"

// lead routes the shard's requests to its service.
func (n *node) lead(shard int, l leadership) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if old := n.leading[shard]; old != nil {
		l.sql = old.sql
	}
	n.leading[shard] = &l
	n.countLeading()
}

// countLeading sets the gauge to the shards whose service serves; called
// with mu held.
func (n *node) countLeading() {
	serving := 0
	for _, l := range n.leading {
		if l.api != nil {
			serving++
		}
	}
	n.leader.Set(float64(serving))
}

// follow routes them to the shard's next leader, wherever it will be.
func (n *node) follow(shard int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if l := n.leading[shard]; l != nil && l.sql != nil {
		l.sql.Close()
	}
	delete(n.leading, shard)
	n.countLeading()
}

// led is the shard's leadership, if this node writes it.
func (n *node) led(shard int) *leadership {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leading[shard]
}

// sqlForLeader is the listener the shard's SQL endpoint serves: the
// node's connections, handed over (see acceptSQL).
func (n *node) sqlForLeader(shard int) net.Listener {
	l := cluster.NewHandoff(n.sqlLn.Addr())
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.leading[shard] == nil {
		n.leading[shard] = &leadership{}
	}
	n.leading[shard].sql = l
	return l
}

// firstLed is the lowest shard this node writes, or -1.
func (n *node) firstLed() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	first := -1
	for i, l := range n.leading {
		if l.api != nil && (first < 0 || i < first) {
			first = i
		}
	}
	return first
}

func (n *node) shardOf(partnerID string) int {
	return cluster.ShardOf(partnerID, len(n.shards))
}

// requestShard is the shard a request is for, once routed.
type requestShard struct{}

// shardFor is the shard a request is for: an admin request's named one,
// its partner's, or, for a request that names none (no credentials), one
// this node writes, or the first.
func (n *node) shardFor(r *http.Request) int {
	if name := r.Header.Get(shardHeader); name != "" {
		if i := slices.IndexFunc(n.shards, func(sh shard) bool { return sh.name == name }); i >= 0 {
			return i
		}
	}
	if id, ok := api.ClaimedPartner(r, n.partners); ok {
		return n.shardOf(id)
	}
	return max(n.firstLed(), 0)
}

// ServeHTTP answers a request here when this node writes the shard it is
// for, and forwards it to the shard's leader otherwise. Probes and
// /metrics are always this node's own.
func (n *node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/metrics":
		n.scrape.ServeHTTP(w, r)
		return
	case "/healthz":
		health.Alive(w, r)
		return
	case "/readyz":
		n.ready.ServeHTTP(w, r)
		return
	}
	target := n.shardFor(r)
	if l := n.led(target); l != nil && l.api != nil {
		l.api.ServeHTTP(w, r)
		return
	}
	n.forward.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestShard{}, target)))
}

// gather is the node's metrics and those of every shard it writes.
func (n *node) gather() ([]*dto.MetricFamily, error) {
	gs := prometheus.Gatherers{n.metrics, n.runtime}
	n.mu.Lock()
	for _, l := range n.leading {
		if l.metrics != nil {
			gs = append(gs, l.metrics)
		}
	}
	n.mu.Unlock()
	return gs.Gather()
}

// runNode is `serve --postgres`: the node takes a free shard's lease,
// writes it while it holds the lease, and takes another free one only if
// no node has for a while (a spare is better placed), so that while fewer
// nodes live than there are shards, every shard is still written.
func runNode(ctx context.Context, cfg serveConfig, cc clusterConfig, stdout io.Writer) error {
	log := cfg.Logger.With("node", cc.Node)
	cfg.Logger = log
	db, err := pgxpool.New(ctx, cc.Postgres)
	if err != nil {
		return fmt.Errorf("--postgres: %w", err)
	}
	defer db.Close()
	if err := cluster.Migrate(ctx, db); err != nil {
		return err
	}
	if err := cluster.Shards(ctx, db, max(cc.Shards, 1)); err != nil {
		return err
	}
	n, err := openNode(cfg, cc, db)
	if err != nil {
		return err
	}
	defer n.close()
	// Listeners bound to port 0 keep their port across roles.
	cfg.SFTPAddr, cfg.HTTPAddr = n.sftpLn.Addr().String(), n.httpLn.Addr().String()
	if n.sqlLn != nil {
		cfg.SQLAddr = n.sqlLn.Addr().String()
	}
	cfg.node = n
	n.serve(ctx)
	fmt.Fprintf(stdout, "flatfiler serve: node %s of the cluster in %s, data in %s\n", cc.Node, redactURL(cc.Postgres), cfg.Data)
	fmt.Fprintf(stdout, "  SFTP  %s\n  HTTP  http://%s\n", n.sftpLn.Addr(), n.httpLn.Addr())
	if n.sqlLn != nil {
		fmt.Fprintf(stdout, "  SQL   postgres://ANALYST@%s/warehouse\n", n.sqlLn.Addr())
	}
	fmt.Fprintf(stdout, "  following until it holds a warehouse's lease\n")

	// Each node tries the shards from its own place in the list, so that
	// nodes starting together spread over them rather than queue on one.
	var leases []*cluster.Lease
	for i := range n.shards {
		sh := n.shards[(cluster.ShardOf(cc.Node, len(n.shards))+i)%len(n.shards)]
		leases = append(leases, &cluster.Lease{DB: db, Name: sh.lease, Node: n.instance, TTL: cc.LeaseTTL})
	}
	httpAdv, sqlAdv := advertised(n.httpLn, cc.Advertise), ""
	if n.sqlLn != nil {
		sqlAdv = advertised(n.sqlLn, cc.Advertise)
	}
	n.httpAdvertised = httpAdv

	var out sync.Mutex // one banner line at a time
	say := func(format string, a ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Fprintf(stdout, format, a...)
	}
	ended := make(chan int) // a shard's leadership ended
	var leaders sync.WaitGroup
	defer leaders.Wait()
	writing := map[int]bool{}
	freeSince := map[int]time.Time{} // shards seen without a leader, from when
	tick := time.NewTicker(cc.LeaseTTL / 3)
	defer tick.Stop()
	for {
		// A node writing nothing takes any free shard at once; one that
		// writes k shards waits until a shard has had no leader for 2k
		// TTLs, the time a spare, or a node writing fewer, takes to come.
		for _, l := range leases {
			idx := slices.IndexFunc(n.shards, func(sh shard) bool { return sh.lease == l.Name })
			if writing[idx] {
				continue
			}
			if len(writing) > 0 {
				cctx, cancel := context.WithTimeout(ctx, cc.LeaseTTL/3)
				_, err := cluster.CurrentHolder(cctx, db, l.Name)
				cancel()
				if !errors.Is(err, cluster.ErrNoHolder) {
					delete(freeSince, idx)
					continue
				}
				if _, seen := freeSince[idx]; !seen {
					freeSince[idx] = time.Now()
				}
				if time.Since(freeSince[idx]) < time.Duration(2*len(writing))*cc.LeaseTTL {
					continue
				}
			}
			held, err := l.TryHold(ctx)
			if err != nil || held == nil {
				continue
			}
			writing[idx] = true
			delete(freeSince, idx)
			leaders.Go(func() {
				n.leadShard(ctx, cfg, idx, l, held, httpAdv, sqlAdv, say)
				select {
				case ended <- idx:
				case <-ctx.Done():
				}
			})
		}
		select {
		case <-ctx.Done():
			return nil
		case idx := <-ended:
			delete(writing, idx)
			if len(writing) == 0 {
				say("  following\n")
			}
		case <-tick.C:
		}
	}
}

// leadShard writes one shard while its lease holds: the service starts on
// the shard's directory, and stops when the lease is lost or ctx ends.
func (n *node) leadShard(ctx context.Context, cfg serveConfig, idx int, lease *cluster.Lease, held *cluster.Held,
	httpAdv, sqlAdv string, say func(string, ...any)) {
	log := cfg.Logger
	sh := n.shards[idx]
	log.Info("took the warehouse lease", "lease", lease.Name, "token", held.Token)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	scfg := cfg
	scfg.Data, scfg.shard = sh.dir, idx
	svc, err := startService(lctx, scfg)
	if err != nil {
		// Most often the last leader still has the warehouse open (its
		// DuckDB lock), stepping down: give the lease back and try again.
		log.Error("could not lead: the warehouse did not open", "lease", lease.Name, "err", err)
		n.follow(idx)
		_ = held.Release(context.WithoutCancel(ctx))
		select {
		case <-ctx.Done():
		case <-time.After(lease.TTL / 3):
		}
		return
	}
	if err := lease.Advertise(ctx, held.Token, httpAdv, sqlAdv); err != nil {
		log.Error("advertising the leader's addresses", "err", err)
	}
	log.Info("leading: the warehouse is open here", "lease", lease.Name, "http", httpAdv, "sql", sqlAdv)
	say("  leading %s (lease token %d)\n", lease.Name, held.Token)
	if svc.demo != nil {
		var b strings.Builder
		printDemo(&b, svc.demo, cfg.SFTPAddr, cfg.HTTPAddr)
		say("%s", b.String())
	}
	select {
	case <-held.Lost():
		log.Error("lost the warehouse lease; stepping down", "lease", lease.Name, "err", held.Err())
		cancel()
		<-svc.Done()
	case <-ctx.Done():
		<-svc.Done()
		if err := held.Release(context.Background()); err != nil {
			log.Warn("releasing the warehouse lease", "err", err)
		}
	}
}

// openNode opens what the node keeps whatever its role and binds its
// listeners.
func openNode(cfg serveConfig, cc clusterConfig, db *pgxpool.Pool) (_ *node, err error) {
	n := &node{log: cfg.Logger, metrics: prometheus.NewRegistry(), runtime: prometheus.NewRegistry(),
		root: cfg.Data, shards: clusterShards(cfg.Data, cc.Shards), instance: instanceOf(cc.Node)}
	n.dir = &cluster.Directory{DB: db, Self: n.instance}
	n.leading = map[int]*leadership{}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	n.scrape = promhttp.HandlerFor(prometheus.GathererFunc(n.gather), promhttp.HandlerOpts{})
	n.leader = leaderGauge()
	n.metrics.MustRegister(n.leader, shardsGauge(len(n.shards)))
	n.runtime.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, err
	}
	if n.partners, err = partner.Open(filepath.Join(cfg.Data, "partners")); err != nil {
		return nil, err
	}
	if n.inbox, err = inbox.Open(filepath.Join(cfg.Data, "sftp")); err != nil {
		return nil, err
	}
	// Other nodes' uploads in progress are theirs; an upload left by a
	// dead node goes once nothing has touched it for twice SFTP's idle
	// timeout.
	n.inbox.StaleUpload = max(2*cfg.IdleTimeout, time.Minute)
	if n.sftp, err = newSFTP(cfg, n.partners, n.inbox, n.metrics); err != nil {
		return nil, err
	}
	if n.sftpLn, err = net.Listen("tcp", cfg.SFTPAddr); err != nil {
		return nil, fmt.Errorf("sftp: %w", err)
	}
	if n.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	if cfg.SQLAddr != "" {
		if n.sqlLn, err = net.Listen("tcp", cfg.SQLAddr); err != nil {
			return nil, fmt.Errorf("sql: %w", err)
		}
	}
	dataDir := health.DataDir{Path: cfg.Data, MinFree: uint64(cfg.MinFreeSpace)}
	// Ready: every shard written, here (its service's own checks) or by
	// a leader that answers.
	n.ready = &health.Checker{Checks: []health.Check{
		{Name: "shards", Run: func(ctx context.Context) error {
			for i, sh := range n.shards {
				if l := n.led(i); l != nil && l.health != nil {
					if ok, results := l.health.Ready(ctx); !ok {
						return fmt.Errorf("%s here: %+v", sh.lease, results)
					}
					continue
				}
				if _, err := n.dir.Leader(ctx, sh.lease); err != nil {
					return fmt.Errorf("%s: %w", sh.lease, err)
				}
			}
			return nil
		}},
		{Name: "data", Run: dataDir.Check},
	}, Timeout: 5 * time.Second}
	n.forward = cluster.Forwarder(n.dir, func(r *http.Request) string {
		i, ok := r.Context().Value(requestShard{}).(int)
		if !ok {
			i = n.shardFor(r)
		}
		return n.shards[i].lease
	}, cfg.Logger)
	n.http = &http.Server{Handler: n, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}
	return n, nil
}

func (n *node) serve(ctx context.Context) {
	n.wg.Go(func() {
		if err := n.http.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server", "err", err)
		}
	})
	n.wg.Go(func() {
		if err := n.sftp.Serve(context.WithoutCancel(ctx), n.sftpLn); err != nil {
			n.log.Error("sftp server", "err", err)
		}
	})
	if n.sqlLn != nil {
		n.wg.Go(func() {
			if err := n.acceptSQL(); err != nil {
				n.log.Error("sql endpoint", "err", err)
			}
		})
	}
}

// acceptSQL hands each analyst's connection to a SQL endpoint of this
// node's while it writes a shard, else pipes it to the first shard's
// leader.
func (n *node) acceptSQL() error {
	for {
		conn, err := n.sqlLn.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			// An analyst reaches the first shard the node it connected to
			// writes, or the first shard: a cluster's shards are one lake
			// through flatfiler export, not one database.
			if first := n.firstLed(); first >= 0 {
				if l := n.led(first); l != nil && l.sql != nil && l.sql.Deliver(conn) {
					return
				}
			}
			cluster.ForwardConn(conn, n.dir, n.shards[0].lease, n.log)
		}()
	}
}

func (n *node) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n.http != nil {
		_ = n.http.Shutdown(ctx)
	}
	if n.sftp != nil {
		n.sftp.Shutdown(ctx)
	}
	for _, ln := range []net.Listener{n.sftpLn, n.httpLn, n.sqlLn} {
		if ln != nil {
			ln.Close()
		}
	}
	n.wg.Wait()
	if n.inbox != nil {
		n.inbox.Close()
	}
}

// leaderGauge counts the warehouses the process writes.
func leaderGauge() prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "flatfiler_cluster_leader",
		Help: "Warehouses this process writes: 1 for a single server; for a cluster's node the shards whose lease it holds, 0 while it only forwards to the nodes that do.",
	})
}

// shardsGauge says how many shards the cluster has, so that an alert can
// count the nodes leading one against it.
func shardsGauge(n int) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "flatfiler_cluster_shards",
		Help: "Warehouses the cluster's partners are spread over (--shards); 1 for a single server.",
	}, func() float64 { return float64(n) })
}

// advertised is the address other nodes reach a listener at.
func advertised(ln net.Listener, host string) string {
	addr := ln.Addr().(*net.TCPAddr)
	if host == "" {
		if !addr.IP.IsUnspecified() {
			return addr.String()
		}
		host, _ = os.Hostname()
	}
	return net.JoinHostPort(host, fmt.Sprint(addr.Port))
}

// instanceOf makes a node's name unique to this process: two processes
// given one --node by mistake must not take each other for themselves (a
// follower would then never forward to its leader).
func instanceOf(name string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return name + "#" + hex.EncodeToString(b)
}

// redactURL is a connection URL fit for a log: without its password.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// defaultNodeName is unique per process on a machine, and across
// machines by their host names.
func defaultNodeName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}
