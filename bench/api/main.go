// Command api benchmarks the reporting API (make bench-api): warehouses of
// generated users of several shapes (gen --shape; by default mixed and
// members with about 100k users, cards with about 10M transactions) each
// served by `flatfiler serve`, loaded over loopback by a fixed number of
// connections asking for expenses, networth and a transactions page of
// random users. It measures alone, then while the shape's nightly file
// goes through the server's own path (SFTP upload, notification, job), and
// prints p50, p99 and requests per second. Every run starts from the same
// warehouse, a copy of the one built the first time
// (bench/out/api/SHAPE/base.duckdb).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flatfiler/flatfiler/bench/internal/proc"
)

const (
	apiKey   = "bench-api-key-0123456789abcdef"
	httpAddr = "127.0.0.1:18680"
	sftpAddr = "127.0.0.1:18622"
	sqlAddr  = "127.0.0.1:18633"
)

type config struct {
	bin, dir         string
	shape            string
	users, conns     int
	nightly          string // the nightly file's size
	duration, warmup time.Duration
	ingest           bool
	analyst          bool // measure also beside an analyst's heavy aggregate
	serveArgs        []string
	profile          string // the server's CPU profile, SHAPE.prof in this directory
}

// shapeUsers are the users each shape's warehouse is built of: over 100k
// users for mixed and members (2% of mixed's are deleted by the file
// itself), over 10M transactions for cards (1,800 users made 9.97M).
var shapeUsers = map[string]int{"mixed": 102500, "members": 102500, "cards": 1850}

func main() {
	var c config
	flag.StringVar(&c.bin, "bin", "bin/flatfiler", "flatfiler binary")
	flag.StringVar(&c.dir, "dir", "bench/out/api", "work directory: each shape's generated files and server data, kept between runs")
	shapes := flag.String("shapes", "mixed,members,cards", "comma-separated shapes of the warehouses (gen --shape)")
	users := flag.Int("users", 0, "users to generate for every shape (default: 102,500 for mixed and members, 1,800 for cards)")
	flag.StringVar(&c.nightly, "nightly", "1GiB", "size of the nightly file ingested during the second phase (gen --shape nightly --night-of SHAPE --size)")
	flag.IntVar(&c.conns, "conns", 32, "concurrent connections")
	flag.DurationVar(&c.duration, "duration", 30*time.Second, "length of the phase without ingest")
	flag.DurationVar(&c.warmup, "warmup", 5*time.Second, "load before measuring, unmeasured (a server just started has cold caches)")
	flag.BoolVar(&c.ingest, "ingest", true, "measure also while a nightly file is ingested")
	flag.BoolVar(&c.analyst, "analyst", true, "measure also while an analyst runs a heavy aggregate over the SQL endpoint")
	flag.StringVar(&c.profile, "serve-cpuprofile", "", "write the server's CPU profile of each shape to DIR/SHAPE.prof")
	serveArgs := flag.String("serve-args", "", `more flags for flatfiler serve, space-separated (e.g. "--read-memory-limit 128MB")`)
	flag.Parse()
	c.serveArgs = strings.Fields(*serveArgs)
	dir := c.dir
	for _, shape := range strings.Split(*shapes, ",") {
		c.shape, c.dir, c.users = strings.TrimSpace(shape), filepath.Join(dir, strings.TrimSpace(shape)), *users
		if c.users == 0 {
			c.users = shapeUsers[c.shape]
		}
		if err := run(c); err != nil {
			fmt.Fprintln(os.Stderr, "bench-api:", err)
			os.Exit(1)
		}
	}
}

type credentials struct {
	APIKey       string `json:"api_key"`
	SFTPPassword string `json:"sftp_password"`
}

func run(c config) error {
	data := filepath.Join(c.dir, "data")
	db := filepath.Join(data, "warehouse.duckdb")
	base := filepath.Join(c.dir, "base.duckdb")
	credsFile := filepath.Join(c.dir, "credentials.json")
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(base); err != nil {
		if err := build(c, data, db, credsFile); err != nil {
			return err
		}
		if err := proc.CopyFile(db, base); err != nil {
			return err
		}
	}
	// Each run applies a nightly file: start every run from the same
	// warehouse, and drop the jobs (and archived files) of the last.
	if err := restore(base, data, db); err != nil {
		return err
	}
	var creds credentials
	b, err := os.ReadFile(credsFile)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &creds); err != nil {
		return err
	}
	users, err := column(c.bin, db, "SELECT partner_customer_id FROM users ORDER BY 1")
	if err != nil {
		return err
	}
	counts, err := column(c.bin, db, "SELECT (SELECT count(*) FROM transactions) || ' transactions, ' || (SELECT count(*) FROM users) || ' users, ' || (SELECT count(*) FROM accounts) || ' accounts'")
	if err != nil {
		return err
	}
	// The night after the warehouse's first file, for its first users: gen
	// draws a shape's users in the same order whatever their number.
	nightly := filepath.Join(c.dir, "nightly-"+c.nightly+".xml")
	if _, err := os.Stat(nightly); err != nil {
		if err := sh(c.bin, "gen", "--shape", "nightly", "--night-of", c.shape, "--size", c.nightly, "-o", nightly); err != nil {
			return err
		}
	}
	fmt.Printf("\n%s: warehouse of %s (%s)\n", c.shape, counts[0], db)

	args := []string{"serve", "--data", data, "--http-addr", httpAddr, "--sftp-addr", sftpAddr, "--log-level", "warn"}
	if c.analyst {
		args = append(args, "--sql-addr", sqlAddr)
	}
	if c.profile != "" {
		args = append(args, "--cpuprofile", filepath.Join(c.profile, c.shape+".prof"))
	}
	args = append(args, c.serveArgs...)
	srv := exec.Command(c.bin, args...)
	srv.Stdout, srv.Stderr = io.Discard, os.Stderr
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		_ = srv.Wait()
	}()
	if err := proc.WaitReady(httpAddr, apiKey); err != nil {
		return err
	}
	var analyst analystCreds
	if c.analyst {
		// Added, and answered once, before anything is measured: its
		// first login builds the endpoint's catalog.
		if analyst, err = readyAnalyst(c, data); err != nil {
			return err
		}
	}
	load(c, users, lasting(c.warmup))
	fmt.Printf("%d connections; expenses, networth and transactions page 1 in turn, random users; measured after %s of warm-up\n\n", c.conns, c.warmup)
	fmt.Println("| phase | endpoint | requests | per second | p50 | p99 | max | errors |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	load(c, users, lasting(c.duration)).print("alone")
	if c.analyst {
		var queries int
		stats := load(c, users, func(ctx context.Context) error {
			var err error
			queries, err = analystLoad(ctx, c, analyst)
			return err
		})
		stats.print("beside an analyst")
		if stats.err != nil {
			return stats.err
		}
		fmt.Printf("\nthe analyst's aggregate ran %d times in %s\n", queries, c.duration)
	}
	if !c.ingest {
		return nil
	}

	var ingest time.Duration
	stats := load(c, users, func(ctx context.Context) error {
		start := time.Now()
		_, err := proc.Deliver(ctx, proc.Server{HTTPAddr: httpAddr, SFTPAddr: sftpAddr, APIKey: apiKey,
			SFTPPassword: creds.SFTPPassword, PollEvery: 500 * time.Millisecond}, nightly)
		ingest = time.Since(start)
		return err
	})
	stats.print("during ingest")
	if stats.err != nil {
		return stats.err
	}
	fmt.Printf("\nnightly file %s: uploaded, notified and applied in %.1f s while loaded\n", filepath.Base(nightly), ingest.Seconds())
	if retries, err := metric("flatfiler_commit_retries_total"); err == nil {
		fmt.Printf("commits retried alone after running out of memory: %s\n", retries)
	}
	if rss, err := proc.PeakRSS(srv.Process.Pid); err == nil {
		fmt.Printf("server peak RSS: %d MB\n", rss/1e6)
	}
	return nil
}

// build generates the users and ingests them once into a new data
// directory; later runs reuse it.
func build(c config, data, db, credsFile string) error {
	if err := os.RemoveAll(data); err != nil {
		return err
	}
	src := filepath.Join(c.dir, fmt.Sprintf("users-%d.xml", c.users))
	if _, err := os.Stat(src); err != nil {
		if err := sh(c.bin, "gen", "--shape", c.shape, "--users", fmt.Sprint(c.users), "-o", src); err != nil {
			return err
		}
	}
	out, err := exec.Command(c.bin, "partner", "add", "demo", "--data", data, "--domain", "bench.flatfiler.local", "--api-key", apiKey, "--json").Output()
	if err != nil {
		return fmt.Errorf("partner add: %w", err)
	}
	if err := os.WriteFile(credsFile, out, 0o600); err != nil {
		return err
	}
	// Balances dated at the generator's anchor, so networth has a month.
	return sh(c.bin, "ingest", "--db", db, "--partner", "demo", "--as-of", "2026-10-31", src)
}

// restore puts the built warehouse back and empties the job directory.
func restore(base, data, db string) error {
	if err := os.RemoveAll(filepath.Join(data, "jobs")); err != nil {
		return err
	}
	if err := os.Remove(db + ".wal"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return proc.CopyFile(base, db)
}

func sh(bin string, args ...string) error {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	fmt.Fprintf(os.Stderr, "$ %s %s\n", bin, strings.Join(args, " "))
	return cmd.Run()
}

func column(bin, db, query string) ([]string, error) {
	out, err := exec.Command(bin, "sql", "--db", db, "--format", "csv", query).Output()
	if err != nil {
		return nil, fmt.Errorf("sql %q: %w", query, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[1:], nil
}

var endpoints = []struct {
	name string
	path func(user string) string
}{
	{"expenses", func(u string) string {
		return "/api/v2/users/" + u + "/expenses?begin_on=2026-10-01&end_on=2026-10-31"
	}},
	{"networth", func(u string) string { return "/api/v2/users/" + u + "/networth" }},
	{"transactions", func(u string) string { return "/api/v2/users/" + u + "/transactions" }},
}

type result struct {
	latencies [][]time.Duration // per endpoint
	errors    []int
	gone      int      // 404s: users the nightly file deleted, picked from the list made before it
	failures  []string // the first few errors, as the client saw them
	elapsed   time.Duration
	err       error
}

// lasting is a phase of load that ends after d.
func lasting(d time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		return nil
	}
}

// load runs conns workers, each waiting for its answer before asking
// again, until phase returns.
func load(c config, users []string, phase func(context.Context) error) *result {
	tr := &http.Transport{MaxIdleConnsPerHost: c.conns, MaxConnsPerHost: c.conns}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	res := &result{latencies: make([][]time.Duration, len(endpoints)), errors: make([]int, len(endpoints))}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < c.conns; w++ {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := w; ctx.Err() == nil; i++ {
				e := i % len(endpoints)
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+httpAddr+endpoints[e].path(users[rng.IntN(len(users))]), nil)
				req.SetBasicAuth(apiKey, "")
				t := time.Now()
				r, err := client.Do(req)
				failure, gone := "", false
				if err != nil {
					failure = err.Error()
				} else {
					body, _ := io.ReadAll(r.Body)
					r.Body.Close()
					gone = r.StatusCode == http.StatusNotFound && bytes.Contains(body, []byte("no user"))
					if r.StatusCode != 200 && !gone {
						failure = fmt.Sprintf("%s: %s", r.Status, bytes.TrimSpace(body[:min(len(body), 300)]))
					}
				}
				d := time.Since(t)
				if ctx.Err() != nil {
					return
				}
				mu.Lock()
				if gone {
					res.gone++
				} else if failure == "" {
					res.latencies[e] = append(res.latencies[e], d)
				} else {
					res.errors[e]++
					if len(res.failures) < 5 {
						res.failures = append(res.failures, fmt.Sprintf("%s %s after %v: %s", endpoints[e].name, req.URL.Path, d.Round(time.Millisecond), failure))
					}
				}
				mu.Unlock()
			}
		})
	}
	res.err = phase(ctx)
	res.elapsed = time.Since(start)
	cancel()
	wg.Wait()
	return res
}

func (r *result) print(phase string) {
	var all []time.Duration
	errs := 0
	for i, l := range r.latencies {
		all = append(all, l...)
		errs += r.errors[i]
		row(phase, endpoints[i].name, l, r.errors[i], r.elapsed)
	}
	row(phase, "all", all, errs, r.elapsed)
	if r.gone > 0 {
		fmt.Printf("\n%s: %d answers 404 for users the nightly file deleted (not counted)\n", phase, r.gone)
	}
	for _, f := range r.failures {
		fmt.Printf("\n%s: %s", phase, f)
	}
	if len(r.failures) > 0 {
		fmt.Println()
	}
}

func row(phase, name string, l []time.Duration, errs int, elapsed time.Duration) {
	if len(l) == 0 {
		fmt.Printf("| %s | %s | 0 | | | | | %d |\n", phase, name, errs)
		return
	}
	slices.Sort(l)
	q := func(p float64) string {
		return fmt.Sprintf("%.1f ms", float64(l[int(p*float64(len(l)-1))].Microseconds())/1000)
	}
	fmt.Printf("| %s | %s | %d | %.0f | %s | %s | %s | %d |\n", phase, name, len(l), float64(len(l))/elapsed.Seconds(), q(0.5), q(0.99), q(1), errs)
}

// metric reads one sample's value from the server's /metrics.
func metric(name string) (string, error) {
	res, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no %s in /metrics", name)
}

// analystHeavy is an analyst's aggregate over every transaction.
const analystHeavy = `SELECT a.account_type, t.tag, count(*), sum(t.amount)
FROM transactions t JOIN accounts a USING (partner_id, account_id) GROUP BY ALL`

// analystCreds is the bench's analyst.
type analystCreds struct{ name, password string }

func (a analystCreds) url() string {
	return fmt.Sprintf("postgres://%s:%s@%s/warehouse?sslmode=disable", a.name, a.password, sqlAddr)
}

// readyAnalyst adds an analyst and waits, up to 5 minutes, until the SQL
// endpoint answers it.
func readyAnalyst(c config, data string) (analystCreds, error) {
	a := analystCreds{name: fmt.Sprintf("bench%d", time.Now().UnixNano())}
	out, err := exec.Command(c.bin, "analyst", "add", a.name, "--data", data, "--all-partners", "--json").Output()
	if err != nil {
		return a, fmt.Errorf("analyst add: %w", err)
	}
	var creds struct{ Password string }
	if err := json.Unmarshal(out, &creds); err != nil {
		return a, err
	}
	a.password = creds.Password
	ctx := context.Background()
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(time.Second) {
		conn, err := pgx.Connect(ctx, a.url())
		if err == nil {
			var one int
			err = conn.QueryRow(ctx, "SELECT 1").Scan(&one)
			conn.Close(ctx)
		}
		if err == nil {
			return a, nil
		}
		if time.Now().After(deadline) {
			return a, fmt.Errorf("the SQL endpoint did not answer an analyst: %w", err)
		}
	}
}

// analystLoad runs analystHeavy over the SQL endpoint, one after another,
// for the phase's length, and returns how many completed.
func analystLoad(ctx context.Context, c config, a analystCreds) (int, error) {
	conn, err := pgx.Connect(ctx, a.url())
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(c.duration)
	n := 0
	for time.Now().Before(deadline) {
		rows, err := conn.Query(ctx, analystHeavy)
		if err != nil {
			return n, err
		}
		for rows.Next() {
		}
		if err := rows.Err(); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
