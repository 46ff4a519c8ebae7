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
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
	// over; a node writes one at a time, so nodes = shards + spares.
	Shards int
	// Advertise is the host other nodes reach this one at; default the
	// listen address's, or the host name when that is a wildcard.
	Advertise string
}

// node is one process of a cluster sharing a data directory. It runs the
// SFTP server and holds the HTTP and SQL listeners for its whole life;
// while it holds the warehouse lease it is the leader and runs a service
// (serve.go) on them, else it forwards requests to the leader.
type node struct {
	log      *slog.Logger
	root     string       // the shared data directory
	instance string       // the node's name and this process's own suffix: what holds leases
	shards   []shard      // the cluster's warehouses
	led      atomic.Int32 // index of the shard this node leads; -1: none
	db       *pgxpool.Pool
	dir      *cluster.Directory
	partners *partner.Registry
	inbox    *inbox.Inbox
	sftp     *sftpd.Server
	// metrics is what the node counts whatever its role; runtime, the Go
	// and process collectors, is served only while it follows (the
	// leader's service registers its own).
	metrics, runtime *prometheus.Registry
	leader           prometheus.Gauge

	sftpLn, httpLn, sqlLn net.Listener
	httpAdvertised        string // where other nodes, and commands, reach httpLn
	http                  *http.Server
	standby, forward      http.Handler
	api                   atomic.Pointer[http.Handler]    // the leader's; nil while following
	leaderSQL             atomic.Pointer[cluster.Handoff] // the leader's SQL endpoint's listener
	wg                    sync.WaitGroup
}

// lead routes the node's HTTP requests to the service's API.
func (n *node) lead(api http.Handler) {
	n.api.Store(&api)
	n.leader.Set(1)
}

// owns says whether a partner's data lives in the shard this node leads.
func (n *node) owns(partnerID string) bool {
	return n.shardOf(partnerID) == int(n.led.Load())
}

func (n *node) shardOf(partnerID string) int {
	return cluster.ShardOf(partnerID, len(n.shards))
}

// requestShard is the shard a request is for: its partner's, or, for a
// request that names none (no credentials, a probe), this node's own, or
// the first.
type requestShard struct{}

func (n *node) shardFor(r *http.Request) int {
	if id, ok := api.ClaimedPartner(r, n.partners); ok {
		return n.shardOf(id)
	}
	if led := int(n.led.Load()); led >= 0 {
		return led
	}
	return 0
}

// follow routes them to the leader, wherever it is.
func (n *node) follow() {
	n.api.Store(nil)
	if l := n.leaderSQL.Swap(nil); l != nil {
		l.Close()
	}
	n.leader.Set(0)
}

// sqlForLeader is the listener the leader's SQL endpoint serves: the
// node's connections, handed over.
func (n *node) sqlForLeader() net.Listener {
	l := cluster.NewHandoff(n.sqlLn.Addr())
	n.leaderSQL.Store(l)
	return l
}

// ServeHTTP answers a request here when this node leads the shard of its
// partner, and forwards it to the shard's leader otherwise. Probes and
// /metrics are always this node's own; /admin/ requests (flatfiler sql,
// export, backup) carry a shard's token and are sent to its leader by the
// command.
func (n *node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	local := n.api.Load()
	switch {
	case r.URL.Path == "/metrics" || r.URL.Path == "/healthz" || r.URL.Path == "/readyz":
	case local != nil && strings.HasPrefix(r.URL.Path, "/admin/"):
	default:
		target := n.shardFor(r)
		if local != nil && target == int(n.led.Load()) {
			break
		}
		n.forward.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestShard{}, target)))
		return
	}
	if local != nil {
		(*local).ServeHTTP(w, r)
		return
	}
	n.standby.ServeHTTP(w, r)
}

// runNode is `serve --postgres`: the node waits for the warehouse lease,
// leads while it holds it, and follows again if it loses it.
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
	for {
		held, lease, err := cluster.AcquireAny(ctx, leases)
		if err != nil {
			return nil // ctx ended: shut down
		}
		idx := slices.IndexFunc(n.shards, func(sh shard) bool { return sh.lease == lease.Name })
		sh := n.shards[idx]
		n.led.Store(int32(idx))
		log.Info("took the warehouse lease", "lease", lease.Name, "token", held.Token)
		lctx, cancel := context.WithCancel(ctx)
		scfg := cfg
		scfg.Data = sh.dir
		svc, err := startService(lctx, scfg)
		if err != nil {
			cancel()
			// Most often the last leader still has the warehouse open (its
			// DuckDB lock), stepping down: give the lease back and try again.
			log.Error("could not lead: the warehouse did not open", "lease", lease.Name, "err", err)
			n.led.Store(-1)
			_ = held.Release(context.WithoutCancel(ctx))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(cc.LeaseTTL / 3):
			}
			continue
		}
		if err := lease.Advertise(ctx, held.Token, httpAdv, sqlAdv); err != nil {
			log.Error("advertising the leader's addresses", "err", err)
		}
		log.Info("leading: the warehouse is open here", "lease", lease.Name, "http", httpAdv, "sql", sqlAdv)
		fmt.Fprintf(stdout, "  leading %s (lease token %d)\n", lease.Name, held.Token)
		printDemo(stdout, svc.demo, cfg.SFTPAddr, cfg.HTTPAddr)
		select {
		case <-held.Lost():
			log.Error("lost the warehouse lease; stepping down", "lease", lease.Name, "err", held.Err())
			cancel()
			<-svc.Done()
			n.led.Store(-1)
			fmt.Fprintf(stdout, "  following\n")
		case <-ctx.Done():
			<-svc.Done()
			cancel()
			if err := held.Release(context.Background()); err != nil {
				log.Warn("releasing the warehouse lease", "err", err)
			}
			return nil
		}
	}
}

// openNode opens what the node keeps whatever its role and binds its
// listeners.
func openNode(cfg serveConfig, cc clusterConfig, db *pgxpool.Pool) (_ *node, err error) {
	n := &node{log: cfg.Logger, db: db, metrics: prometheus.NewRegistry(), runtime: prometheus.NewRegistry(),
		root: cfg.Data, shards: clusterShards(cfg.Data, cc.Shards), instance: instanceOf(cc.Node)}
	n.dir = &cluster.Directory{DB: db, Self: n.instance}
	n.led.Store(-1)
	defer func() {
		if err != nil {
			n.close()
		}
	}()
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
	ready := &health.Checker{Checks: []health.Check{
		{Name: "leaders", Run: func(ctx context.Context) error {
			for _, sh := range n.shards {
				if _, err := n.dir.Leader(ctx, sh.lease); err != nil {
					return fmt.Errorf("%s: %w", sh.lease, err)
				}
			}
			return nil
		}},
		{Name: "data", Run: dataDir.Check},
	}}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(prometheus.Gatherers{n.metrics, n.runtime}, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", health.Alive)
	mux.Handle("GET /readyz", ready)
	n.forward = cluster.Forwarder(n.dir, func(r *http.Request) string {
		i, ok := r.Context().Value(requestShard{}).(int)
		if !ok {
			i = n.shardFor(r)
		}
		return n.shards[i].lease
	}, cfg.Logger)
	mux.Handle("/", n.forward)
	n.standby = mux
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

// acceptSQL hands each analyst's connection to this node's SQL endpoint
// while it leads, else pipes it to the leader's.
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
			if l := n.leaderSQL.Load(); l != nil && l.Deliver(conn) {
				return
			}
			// An analyst reaches the shard of the node it connected to
			// (or the first): a cluster's shards are one lake through
			// flatfiler export, not one database.
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

// leaderGauge is 1 while the process writes a warehouse.
func leaderGauge() prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "flatfiler_cluster_leader",
		Help: "1 while this process holds a warehouse's lease and writes it (a single server always); 0 while it forwards to the nodes that do.",
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
