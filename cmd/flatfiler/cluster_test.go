package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/flatfiler/flatfiler/intake/partner"
	"github.com/flatfiler/flatfiler/internal/failpoint"
	"github.com/flatfiler/flatfiler/internal/pgtest"
)

// clusterNode is a `flatfiler serve --postgres` process.
type clusterNode struct {
	*child
	name  string
	roles chan string // "leading" and "following", as the node prints them
}

// startNode starts a node on dir and waits until it listens.
func startNode(t *testing.T, dir, name string, env []string, extra ...string) *clusterNode {
	t.Helper()
	args := append([]string{"serve", "--data", dir, "--node", name, "--sftp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--sql-addr", "127.0.0.1:0"}, extra...)
	cmd := childCommand(env, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	n := &clusterNode{child: &child{cmd: cmd, stderr: &syncWriter{w: &bytes.Buffer{}}}, name: name, roles: make(chan string, 16)}
	cmd.Stderr = n.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("node %s (pid %d) log:\n%s", name, cmd.Process.Pid, n.stderr.String())
		}
	})
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		var creds partner.Credentials
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 2 && f[0] == "SFTP":
				n.sftp = f[1]
			case len(f) >= 2 && f[0] == "HTTP":
				n.http = f[1]
			case len(f) >= 2 && f[0] == "SQL":
				if u, err := url.Parse(f[1]); err == nil {
					n.sql = u.Host
				}
			case len(f) > 1 && f[0] == "following": // started: following until it holds the lease
				close(listening)
			case len(f) == 1 && f[0] == "following":
				n.roles <- "following"
			case len(f) >= 1 && f[0] == "leading":
				n.roles <- "leading"
			case len(f) == 3 && f[0] == "API" && f[1] == "key":
				creds.APIKey = f[2]
			case len(f) == 3 && f[0] == "SFTP" && f[1] == "user":
				creds.SFTPUser = f[2]
			case len(f) == 3 && f[0] == "SFTP" && f[1] == "password":
				creds.SFTPPassword = f[2]
				c := creds
				n.creds = &c
			}
		}
		close(n.roles)
	}()
	select {
	case <-listening:
	case <-time.After(60 * time.Second):
		t.Fatalf("node %s did not start: %s", name, n.stderr.String())
	}
	return n
}

// await waits for the node to take a role.
func (n *clusterNode) await(t *testing.T, role string, within time.Duration) {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case r, ok := <-n.roles:
			if !ok {
				t.Fatalf("node %s ended before %s:\n%s", n.name, role, n.stderr.String())
			}
			if r == role {
				return
			}
		case <-timeout:
			t.Fatalf("node %s was not %s within %s", n.name, role, within)
		}
	}
}

// readProbe reads GET /api/v2/uploads from the nodes in turn, as a partner
// with a list of addresses would: a node that does not answer 200 is
// followed by the next, and a read no node answered is a failure.
type readProbe struct {
	mu                         sync.Mutex
	reads, retried, failed     int
	outage, longest            time.Duration
	firstFailure, lastAnswered time.Time
}

func (p *readProbe) run(ctx context.Context, key string, nodes []*clusterNode) {
	client := &http.Client{Timeout: 2 * time.Second}
	get := func(n *clusterNode) bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.http+"/api/v2/uploads?api_key="+key, nil)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	for i := 0; ctx.Err() == nil; i++ {
		answered, tries := false, 0
		for k := range nodes {
			tries++
			if answered = get(nodes[(i+k)%len(nodes)]); answered || ctx.Err() != nil {
				break
			}
		}
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		p.mu.Lock()
		p.reads++
		if tries > 1 && answered {
			p.retried++
		}
		if answered {
			if !p.firstFailure.IsZero() {
				p.longest = max(p.longest, now.Sub(p.firstFailure))
				p.firstFailure = time.Time{}
			}
			p.lastAnswered = now
		} else {
			p.failed++
			if p.firstFailure.IsZero() {
				p.firstFailure = now
			}
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestClusterNodeKilledMidJob runs three nodes on one data directory and
// one PostgreSQL. The leader dies by SIGKILL in the middle of a file's job
// (before its commit; after it, before the job is recorded); another node
// takes the lease and finishes the job: every file is applied exactly once,
// and reads sent to any node are answered again within the lease's TTL and
// the warehouse's opening.
func TestClusterNodeKilledMidJob(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and server processes")
	}
	pg := pgtest.Start(t)
	files := newDeliveryFiles(t)
	const ttl = 2 * time.Second
	for i, point := range []string{failpoint.LoadBeforeCommit, failpoint.JobIngested} {
		t.Run(point, func(t *testing.T) {
			ctx := context.Background()
			pgURL, err := pg.Database(ctx, fmt.Sprintf("cluster%d", i))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			code, out, errOut := runCLI(t, "analyst", "add", "ana", "--data", dir, "--all-partners", "--json")
			var analyst struct{ Name, Password string }
			if code != 0 || json.Unmarshal([]byte(out), &analyst) != nil {
				t.Fatalf("analyst add: %d %q %s", code, out, errOut)
			}
			args := []string{"--postgres", pgURL, "--lease-ttl", ttl.String(), "--shutdown-grace", "0s"}
			a := startNode(t, dir, "a", []string{faultsEnv + "=" + point + "=crash"}, args...)
			a.await(t, "leading", time.Minute)
			b := startNode(t, dir, "b", nil, args...)
			c := startNode(t, dir, "c", nil, args...)
			if a.creds == nil {
				t.Fatal("the first leader did not print the demo partner's secrets")
			}
			creds := *a.creds
			b.creds, c.creds = &creds, &creds

			probeCtx, stopProbe := context.WithCancel(ctx)
			probe := &readProbe{}
			probed := make(chan struct{})
			go func() { probe.run(probeCtx, creds.APIKey, []*clusterNode{a, b, c}); close(probed) }()

			// Uploaded to one follower, notified through the other: both
			// reach the leader's jobs through the shared directory and the
			// forwarded request.
			sc, sshConn, err := dialChildSFTP(b.sftp, creds)
			if err != nil {
				t.Fatal(err)
			}
			for i, name := range files.names {
				upload(t, sc, name, files.data[i])
			}
			sc.Close()
			sshConn.Close()
			answer := c.client(t, creds).tryNotify(creds.APIKey, files.names, files.sums())

			if !waitExit(t, a.child, time.Minute) || !strings.Contains(a.stderr.String(), "failpoint "+point+": crash") {
				t.Fatalf("the leader did not die by SIGKILL at %s:\n%s", point, a.stderr.String())
			}
			died := time.Now()
			var leader, follower *clusterNode
			select {
			case r := <-b.roles:
				leader, follower = b, c
				if r != "leading" {
					t.Fatalf("b was %s, not leading", r)
				}
			case r := <-c.roles:
				leader, follower = c, b
				if r != "leading" {
					t.Fatalf("c was %s, not leading", r)
				}
			case <-time.After(time.Minute):
				t.Fatal("no node took over within a minute")
			}
			takeover := time.Since(died)

			// A partner whose notification got no answer sends it again.
			if answer == nil || answer.Status != http.StatusAccepted {
				answer = files.deliverAgain(t, follower.child)
			}
			ts := follower.client(t, creds)
			for _, id := range jobIDs(t, *answer) {
				if j := ts.waitJob(creds.APIKey, id); j["status"] != "success" && j["status"] != "partial-success" {
					t.Errorf("job %s after the takeover: %v", id, j)
				}
			}
			stopProbe()
			<-probed
			t.Logf("leader killed at %s; %s led again %s later; reads: %d, %d answered by a second node, %d by none, longest without an answer %s",
				point, leader.name, takeover.Round(time.Millisecond), probe.reads, probe.retried, probe.failed, probe.longest.Round(time.Millisecond))
			// The lease expires within its TTL; a follower tries every
			// TTL/3 and opens the warehouse in about a second.
			if bound := 2*ttl + 10*time.Second; takeover > bound || probe.longest > bound {
				t.Errorf("takeover %s, reads unanswered for %s; want each under %s", takeover, probe.longest, bound)
			}
			if probe.reads == 0 || probe.lastAnswered.IsZero() {
				t.Error("no read was answered")
			}

			// An analyst connected to the follower is answered by the leader.
			conn, err := pgx.Connect(ctx, "postgres://ana:"+analyst.Password+"@"+follower.sql+"/warehouse?sslmode=disable")
			if err != nil {
				t.Fatalf("analyst through the follower: %v", err)
			}
			// The clean run's fingerprint: a header, then one row.
			fp := strings.Split(strings.TrimSpace(files.want), "\n")
			want := strings.Split(fp[1], ",")[slices.Index(strings.Split(fp[0], ","), "transactions")]
			var got string
			err = conn.QueryRow(ctx, "SELECT count(*)::text FROM transactions").Scan(&got)
			conn.Close(ctx)
			if err != nil || got != want {
				t.Errorf("analyst through the follower: %s transactions, %v; want %s, as after one clean run", got, err, want)
			}

			// The follower first, so that it does not take the lease
			// while the warehouse is checked.
			_ = follower.cmd.Process.Signal(syscall.SIGTERM)
			_ = follower.cmd.Wait()
			checkSettled(t, dir, leader.child, files.want, len(files.names))
		})
	}
}
