// Command cluster benchmarks a nightly delivery of many partners (make
// bench-cluster): the same files, one a partner, delivered at once as
// partners do (SFTP upload, notification, job) to one `flatfiler serve`,
// then to a cluster of three nodes with three shards, all processes on this
// machine. It prints the throughput of each, and what docs/scale-out.md's
// capacity model predicted.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flatfiler/flatfiler/bench/internal/proc"
	"github.com/flatfiler/flatfiler/internal/cluster"
	"github.com/flatfiler/flatfiler/internal/pgtest"
)

type config struct {
	bin, dir      string
	partners      int
	size, shape   string
	nodes, shards int
}

// setup is one way to run the delivery.
type setup struct {
	name          string
	nodes, shards int
	workers       int // jobs a node runs at once (serve --workers)
}

func main() {
	var c config
	flag.StringVar(&c.bin, "bin", "bin/flatfiler", "the flatfiler binary")
	flag.StringVar(&c.dir, "dir", "bench/out/cluster", "where generated files and the runs' data go")
	flag.IntVar(&c.partners, "partners", 6, "partners delivering a file each")
	flag.StringVar(&c.size, "size", "150MB", "each partner's file")
	flag.StringVar(&c.shape, "shape", "mixed", "the files' shape (gen --shape)")
	flag.IntVar(&c.nodes, "nodes", 3, "the cluster's nodes")
	flag.IntVar(&c.shards, "shards", 3, "the cluster's shards (nodes beyond them are spares)")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench-cluster:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	files, bytes, err := generate(c)
	if err != nil {
		return err
	}
	pg, err := pgtest.New()
	if err != nil {
		return err
	}
	defer pg.Stop()
	setups := []setup{
		{"one node", 1, 1, 1},
		// What one process does with the cores when it runs partners'
		// jobs side by side: the fair comparison for shards on one machine.
		{fmt.Sprintf("one node, --workers %d", c.shards), 1, 1, c.shards},
		{fmt.Sprintf("%d nodes, %d shards", c.nodes, c.shards), c.nodes, c.shards, 1},
	}
	fmt.Printf("%d partners, a %s %s file each (%.0f MB in all), delivered at once: SFTP upload, notification, job\n\n",
		c.partners, c.size, c.shape, float64(bytes)/1e6)
	fmt.Printf("%-26s %10s %10s\n", "setup", "seconds", "MB/s")
	results := map[string]float64{}
	for i, s := range setups {
		secs, reads, err := deliver(c, pg, fmt.Sprintf("run%d", i), s, files)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		results[s.name] = float64(bytes) / 1e6 / secs
		fmt.Printf("%-26s %10.1f %10.1f\n%s", s.name, secs, results[s.name], reads)
	}
	fmt.Printf(`
The capacity model (docs/scale-out.md) plans a node at the ingest rate make bench measures
(46 to 54 MB/s of XML with nothing else running), one writer per shard. Here every process
shares this machine's %d cores, so it predicts the cluster at about one node's rate with its
jobs side by side (--workers): the same cores do the same work. On machines of their own, %d
shards would be about %d times one node's.
`, runtime.NumCPU(), c.shards, c.shards)
	return nil
}

// generate writes (once, cached) a file per partner, each of its own seed.
func generate(c config) (files []string, total int64, err error) {
	for i := range c.partners {
		path := filepath.Join(c.dir, fmt.Sprintf("%s-%s-%d.xml", c.shape, c.size, i))
		if _, err := os.Stat(path); err != nil {
			out, err := exec.Command(c.bin, "gen", "--shape", c.shape, "--size", c.size, "--seed", fmt.Sprint(100+i), "-o", path).CombinedOutput()
			if err != nil {
				return nil, 0, fmt.Errorf("gen: %w: %s", err, out)
			}
		}
		info, err := os.Stat(path)
		if err != nil {
			return nil, 0, err
		}
		files = append(files, path)
		total += info.Size()
	}
	return files, total, nil
}

// node is a started flatfiler serve --postgres.
type node struct {
	cmd        *exec.Cmd
	sftp, http string
	lease      string // the lease it took: warehouse, shard/s0...
}

// deliver runs one setup on fresh data and a fresh database, and returns
// the seconds from the first upload to the last job's end, and with
// several nodes what forwarding costs a read.
func deliver(c config, pg *pgtest.Server, name string, s setup, files []string) (secs float64, reads string, err error) {
	ctx := context.Background()
	url, err := pg.Database(ctx, name)
	if err != nil {
		return 0, "", err
	}
	data := filepath.Join(c.dir, name)
	_ = os.RemoveAll(data)
	defer os.RemoveAll(data)
	creds, err := addPartners(c.bin, data, len(files), s.shards)
	if err != nil {
		return 0, "", err
	}
	var nodes []*node
	defer func() {
		for _, n := range nodes {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
			_ = n.cmd.Wait()
		}
	}()
	leading := make(chan string, s.nodes)
	for i := range s.nodes {
		n, err := startNode(c.bin, data, url, fmt.Sprintf("n%d", i), s, leading)
		if err != nil {
			return 0, "", err
		}
		nodes = append(nodes, n)
	}
	// Every shard led before anything is sent.
	for range s.shards {
		select {
		case <-leading:
		case <-time.After(time.Minute):
			return 0, "", errors.New("the shards were not all led within a minute")
		}
	}
	start := time.Now()
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for i, path := range files {
		wg.Go(func() {
			// Uploaded to one node, notified through the next.
			_, errs[i] = proc.Deliver(ctx, proc.Server{
				SFTPAddr: nodes[i%len(nodes)].sftp, HTTPAddr: nodes[(i+1)%len(nodes)].http,
				User: creds[i].PartnerID, APIKey: creds[i].APIKey, SFTPPassword: creds[i].SFTPPassword,
				PollEvery: 50 * time.Millisecond,
			}, path)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, "", err
	}
	secs = time.Since(start).Seconds()
	if s.nodes > 1 {
		if reads, err = measureForwarding(nodes, creds[0], s.shards); err != nil {
			return 0, "", err
		}
	}
	return secs, reads, nil
}

// measureForwarding times reads of one partner sent to the node leading
// its shard and to another node, which forwards them: the cost of
// answering on any node by forwarding rather than from a replica.
func measureForwarding(nodes []*node, c credentials, shards int) (string, error) {
	lease := "shard/s" + fmt.Sprint(cluster.ShardOf(c.PartnerID, shards))
	var leader, other *node
	for _, n := range nodes {
		if n.lease == lease {
			leader = n
		} else if other == nil {
			other = n
		}
	}
	if leader == nil || other == nil {
		return "", fmt.Errorf("no leader of %s, or no other node", lease)
	}
	const reads = 2000
	client := &http.Client{}
	var out strings.Builder
	for _, target := range []struct {
		name string
		n    *node
	}{{"to the shard's leader", leader}, {"through another node", other}} {
		var took []time.Duration
		for range reads {
			t0 := time.Now()
			res, err := client.Get("http://" + target.n.http + "/api/v2/uploads?api_key=" + c.APIKey)
			if err != nil {
				return "", err
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				return "", fmt.Errorf("GET /api/v2/uploads %s: %d", target.name, res.StatusCode)
			}
			took = append(took, time.Since(t0))
		}
		slices.Sort(took)
		fmt.Fprintf(&out, "  %d reads (GET /api/v2/uploads) %-22s p50 %5.2f ms, p99 %5.2f ms\n", reads, target.name,
			ms(took[len(took)/2]), ms(took[len(took)*99/100]))
	}
	return out.String(), nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

type credentials struct {
	PartnerID    string `json:"partner_id"`
	APIKey       string `json:"api_key"`
	SFTPPassword string `json:"sftp_password"`
}

// addPartners adds n partners spread evenly over the shards.
func addPartners(bin, data string, n, shards int) ([]credentials, error) {
	var out []credentials
	perShard := map[int]int{}
	for i := 0; len(out) < n; i++ {
		id := fmt.Sprintf("fi%d", i)
		s := cluster.ShardOf(id, shards)
		if perShard[s] >= (n+shards-1)/shards {
			continue
		}
		perShard[s]++
		b, err := exec.Command(bin, "partner", "add", id, "--data", data, "--json").Output()
		if err != nil {
			return nil, fmt.Errorf("partner add: %w", err)
		}
		var c credentials
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// startNode starts a node; leading is told when it leads a shard.
func startNode(bin, data, url, name string, s setup, leading chan<- string) (*node, error) {
	cmd := exec.Command(bin, "serve", "--data", data, "--postgres", url, "--node", name, "--shards", fmt.Sprint(s.shards), "--workers", fmt.Sprint(s.workers),
		"--sftp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--sql-addr", "")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = nil // the nodes' logs are not the benchmark's output
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &node{cmd: cmd}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 2 && f[0] == "SFTP":
				n.sftp = f[1]
			case len(f) == 2 && f[0] == "HTTP":
				n.http = strings.TrimPrefix(f[1], "http://")
			case len(f) > 1 && f[0] == "following":
				close(listening)
			case len(f) > 1 && f[0] == "leading":
				n.lease = f[1]
				leading <- name
			}
		}
	}()
	select {
	case <-listening:
		return n, nil
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("node %s did not start", name)
	}
}
