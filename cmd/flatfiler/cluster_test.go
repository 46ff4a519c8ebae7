package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"

	"github.com/flatfiler/flatfiler/fixtures/gen"
	"github.com/flatfiler/flatfiler/intake/partner"
	"github.com/flatfiler/flatfiler/internal/cluster"
	"github.com/flatfiler/flatfiler/internal/failpoint"
	"github.com/flatfiler/flatfiler/internal/objstore"
	"github.com/flatfiler/flatfiler/internal/objstore/s3test"
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
	c, stdout := launch(t, env, "node "+name, args...)
	n := &clusterNode{child: c, name: name, roles: make(chan string, 16)}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		var creds partner.Credentials
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			n.readBanner(f, &creds)
			switch {
			case len(f) > 1 && f[0] == "following": // started: following until it holds the lease
				close(listening)
			case len(f) == 1 && f[0] == "following":
				n.roles <- "following"
			case len(f) >= 2 && f[0] == "leading": // leading LEASE (lease token N)
				n.roles <- "leading " + f[1]
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
			if r == role || strings.HasPrefix(r, role+" ") {
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
	const ttl = 3 * time.Second
	for i, point := range []string{failpoint.LoadBeforeCommit, failpoint.JobIngested} {
		t.Run(point, func(t *testing.T) {
			ctx := context.Background()
			pgURL, err := pg.Database(ctx, fmt.Sprintf("cluster%d", i))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			creds := addPartner(t, dir, "demo")
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
			a.creds, b.creds, c.creds = &creds, &creds, &creds

			probeCtx, stopProbe := context.WithCancel(ctx)
			probe := &readProbe{}
			probed := make(chan struct{})
			go func() { probe.run(probeCtx, creds.APIKey, []*clusterNode{a, b, c}); close(probed) }()

			// Uploaded to one follower, notified through the other: both
			// reach the leader's jobs through the shared directory and the
			// forwarded request.
			uploadTo(t, b, creds, files.names, files.data)
			answer := c.client(t, creds).tryNotify(creds.APIKey, files.names, files.sums())

			if !waitExit(t, a.child, time.Minute) || !strings.Contains(a.stderr.String(), "failpoint "+point+": crash") {
				t.Fatalf("the leader did not die by SIGKILL at %s:\n%s", point, a.stderr.String())
			}
			died := time.Now()
			var leader, follower *clusterNode
			select {
			case r := <-b.roles:
				leader, follower = b, c
				if !strings.HasPrefix(r, "leading") {
					t.Fatalf("b was %s, not leading", r)
				}
			case r := <-c.roles:
				leader, follower = c, b
				if !strings.HasPrefix(r, "leading") {
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

// newCluster starts PostgreSQL with a database for the test, and a data
// directory holding a partner on each of the shards.
func newCluster(t *testing.T, database string, shards int) (pgURL, dir string, creds []partner.Credentials) {
	t.Helper()
	pg := pgtest.Start(t)
	pgURL, err := pg.Database(context.Background(), database)
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	for i := range shards {
		creds = append(creds, addPartnerOn(t, dir, i, shards))
	}
	return pgURL, dir, creds
}

// addPartnerOn adds a partner whose ID the cluster places on the shard
// given, and returns its secrets.
func addPartnerOn(t *testing.T, dir string, shard, shards int) partner.Credentials {
	t.Helper()
	for i := 0; ; i++ {
		id := fmt.Sprintf("fi%d", i)
		if cluster.ShardOf(id, shards) == shard {
			return addPartner(t, dir, id)
		}
	}
}

// addPartner adds a partner before the nodes start, and returns its
// secrets (a node would print them only when it created the demo partner).
func addPartner(t *testing.T, dir, id string) partner.Credentials {
	t.Helper()
	code, out, errOut := runCLI(t, "partner", "add", id, "--data", dir, "--domain", id+".example", "--json")
	var creds partner.Credentials
	if code != 0 || json.Unmarshal([]byte(out), &creds) != nil {
		t.Fatalf("partner add %s: %d %s %s", id, code, out, errOut)
	}
	return creds
}

// uploadTo uploads files over a node's SFTP as the partner, and returns
// their MD5s.
func uploadTo(t *testing.T, n *clusterNode, creds partner.Credentials, names []string, data [][]byte) []string {
	t.Helper()
	sc, sshConn, err := dialChildSFTP(n.sftp, creds)
	if err != nil {
		t.Fatal(err)
	}
	defer sshConn.Close()
	defer sc.Close()
	sums := make([]string, len(names))
	for i, name := range names {
		sums[i] = upload(t, sc, name, data[i])
	}
	return sums
}

// deliverTo uploads a file over one node's SFTP and notifies it through
// another node's HTTP, and returns the job's ID.
func deliverTo(t *testing.T, sftpNode, httpNode *clusterNode, creds partner.Credentials, name string, data []byte) string {
	t.Helper()
	sum := uploadTo(t, sftpNode, creds, []string{name}, [][]byte{data})[0]
	a := httpNode.client(t, creds).notify(creds.APIKey, []string{name}, []string{sum})
	if a.Status != http.StatusAccepted {
		t.Fatalf("notify %s through %s: %d %s", name, httpNode.name, a.Status, a.Raw)
	}
	return jobIDs(t, a)[0]
}

// TestClusterShardsNodeKilledMidJob spreads two partners over two shards
// written by two of three nodes, the third a spare. The node writing one
// partner's shard is killed with -9 in the middle of its file; the spare
// takes the shard and applies the file once, while the other partner's
// reads, sent to any node, never fail.
func TestClusterShardsNodeKilledMidJob(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and server processes")
	}
	ctx := context.Background()
	const shards = 2
	pgURL, dir, creds := newCluster(t, "shards", shards)
	work := t.TempDir()
	// The killed partner's file is long enough to be caught mid-load.
	var files [2][]byte
	want := make([]string, 2)
	for i, size := range []int64{2 << 20, 24 << 20} {
		var buf bytes.Buffer
		if _, err := gen.Write(&buf, gen.Options{Bytes: size, Seed: uint64(60 + i), BadRate: 0.001}); err != nil {
			t.Fatal(err)
		}
		files[i] = buf.Bytes()
		path := filepath.Join(work, fmt.Sprintf("f%d.xml", i))
		os.WriteFile(path, files[i], 0o644)
		clean := filepath.Join(work, fmt.Sprintf("clean%d.duckdb", i))
		if code, _, errOut := runCLI(t, "ingest", "--db", clean, "--partner", creds[i].PartnerID, path); code != 0 {
			t.Fatalf("clean ingest: %s", errOut)
		}
		want[i] = fingerprint(t, clean)
	}

	// Processed files go to object storage, not the shared disk.
	s3 := s3test.Start(t, "archive")
	const ttl = 3 * time.Second
	args := []string{"--postgres", pgURL, "--shards", fmt.Sprint(shards), "--lease-ttl", ttl.String(), "--shutdown-grace", "0s",
		"--archive-store", s3.Location}
	var nodes []*clusterNode
	leads := map[string]*clusterNode{} // lease -> node
	for _, name := range []string{"a", "b", "c"} {
		n := startNode(t, dir, name, nil, args...)
		nodes = append(nodes, n)
	}
	// Two nodes lead a shard each; the third waits.
	for len(leads) < shards {
		select {
		case r := <-nodes[0].roles:
			leads[r] = nodes[0]
		case r := <-nodes[1].roles:
			leads[r] = nodes[1]
		case r := <-nodes[2].roles:
			leads[r] = nodes[2]
		case <-time.After(time.Minute):
			t.Fatalf("shards led after a minute: %v", leads)
		}
	}
	victim := leads["leading shard/s1"]
	if victim == nil || leads["leading shard/s0"] == nil {
		t.Fatalf("leaders: %v", leads)
	}
	var spare *clusterNode
	for _, n := range nodes {
		if n != victim && n != leads["leading shard/s0"] {
			spare = n
		}
	}

	probeCtx, stopProbes := context.WithCancel(ctx)
	probes := []*readProbe{{}, {}}
	var probing sync.WaitGroup
	for i := range probes {
		probing.Go(func() { probes[i].run(probeCtx, creds[i].APIKey, nodes) })
	}
	// Each file uploaded to one node and notified through another,
	// neither of them the partner's shard's leader.
	first := deliverTo(t, victim, spare, creds[0], "f0.xml", files[0])
	second := deliverTo(t, leads["leading shard/s0"], spare, creds[1], "f1.xml", files[1])

	ts := spare.client(t, creds[1])
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		j := ts.call(http.MethodGet, "/api/v2/uploads/"+second, nil, creds[1].APIKey).Body["upload"].(map[string]any)
		if j["status"] == "processing" && j["bytes_done"].(float64) > 0 {
			break
		}
		if j["status"] != "queued" && j["status"] != "processing" || time.Now().After(deadline) {
			t.Fatalf("the job ended before the kill: %v", j)
		}
	}
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = victim.cmd.Wait()
	killed := time.Now()
	spare.await(t, "leading shard/s1", time.Minute)
	takeover := time.Since(killed)

	var archived []string // object keys
	for i, id := range []string{first, second} {
		j := spare.client(t, creds[i]).waitJob(creds[i].APIKey, id)
		if j["status"] != "success" && j["status"] != "partial-success" {
			t.Errorf("%s's job: %v", creds[i].PartnerID, j)
		}
		archived = append(archived, fmt.Sprintf("%s/%s/%s-f%d.xml", creds[i].PartnerID, j["created_at"].(string)[:10], id, i))
	}
	stopProbes()
	probing.Wait()
	for i, p := range probes {
		t.Logf("%s (shard s%d): %d reads, %d answered by a second node, %d by none, longest without an answer %s",
			creds[i].PartnerID, i, p.reads, p.retried, p.failed, p.longest.Round(time.Millisecond))
	}
	t.Logf("shard s1's node killed mid-file; %s led it %s later", spare.name, takeover.Round(time.Millisecond))
	if probes[0].failed > 0 {
		t.Errorf("the other shard's partner had %d reads no node answered", probes[0].failed)
	}
	if bound := 2*ttl + 10*time.Second; takeover > bound || probes[1].longest > bound {
		t.Errorf("takeover %s, reads unanswered for %s; want each under %s", takeover, probes[1].longest, bound)
	}

	// The offload follows a job's end, a file at a time.
	leftOnDisk := func() []string {
		left, _ := filepath.Glob(filepath.Join(dir, "shards", "*", "jobs", "archive", "*", "*", "*"))
		return left
	}
	for deadline := time.Now().Add(time.Minute); len(leftOnDisk()) > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	for _, n := range nodes {
		if n != victim {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
			_ = n.cmd.Wait()
		}
	}
	store, err := objstore.Open(ctx, s3.Location)
	if err != nil {
		t.Fatal(err)
	}
	for i, key := range archived {
		if size, ok, err := store.Size(ctx, key); err != nil || !ok || size != int64(len(files[i])) {
			t.Errorf("archived %s: %d bytes, %v, %v; want %d in object storage", key, size, ok, err, len(files[i]))
		}
	}
	if left := leftOnDisk(); len(left) > 0 {
		t.Errorf("processed files left on the shared disk: %v", left)
	}
	for i := range shards {
		db := filepath.Join(dir, "shards", fmt.Sprintf("s%d", i), "warehouse.duckdb")
		if got := fingerprint(t, db); got != want[i] {
			t.Errorf("shard s%d:\n%s\nwant, as after one clean run of its partner's file:\n%s", i, got, want[i])
		}
		if code, out, errOut := runCLI(t, "sql", "--db", db, "--format", "csv", "SELECT count(*) AS n FROM ingests"); code != 0 || out != "n\n1\n" {
			t.Errorf("shard s%d's ingests: %d %q %s; want one", i, code, out, errOut)
		}
	}
}

// TestClusterLeaderStepsDownWithoutPostgres: while PostgreSQL does not
// answer, the leader cannot renew its lease, so it stops writing before
// the lease could pass to another node; once PostgreSQL answers, a node
// leads again and takes files.
func TestClusterLeaderStepsDownWithoutPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and server processes")
	}
	pg := pgtest.Start(t)
	ctx := context.Background()
	pgURL, err := pg.Database(ctx, "outage")
	if err != nil {
		t.Fatal(err)
	}
	files := newDeliveryFiles(t)
	dir := t.TempDir()
	creds := addPartner(t, dir, "demo")
	const ttl = 3 * time.Second
	a := startNode(t, dir, "a", nil, "--postgres", pgURL, "--lease-ttl", ttl.String())
	a.creds = &creds
	a.await(t, "leading", time.Minute)

	if err := pg.Pause(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	a.await(t, "following", time.Minute)
	if stepped := time.Since(paused); stepped > ttl+5*time.Second {
		t.Errorf("the leader stepped down %s after PostgreSQL stopped answering; its lease lasts %s", stepped, ttl)
	}
	if !strings.Contains(a.stderr.String(), "lost the warehouse lease") {
		t.Errorf("the leader did not say why it stepped down:\n%s", a.stderr.String())
	}
	// A follower with nobody to forward to says so, and takes nothing.
	if got := a.client(t, creds).tryNotify(creds.APIKey, files.names, files.sums()); got == nil || got.Status != http.StatusServiceUnavailable {
		t.Errorf("a notification while no node leads: %+v; want 503", got)
	}

	if err := pg.Resume(); err != nil {
		t.Fatal(err)
	}
	a.await(t, "leading", time.Minute)
	answer := files.deliver(t, a.child)
	if answer == nil || answer.Status != http.StatusAccepted {
		t.Fatalf("delivery once PostgreSQL is back: %+v", answer)
	}
	for _, id := range jobIDs(t, *answer) {
		if j := a.client(t, creds).waitJob(creds.APIKey, id); j["status"] != "success" && j["status"] != "partial-success" {
			t.Errorf("job %s: %v", id, j)
		}
	}
	checkSettled(t, dir, a.child, files.want, len(files.names))
}

// TestClusterRoutesEveryKindOfRequest: each partner's push batch, and its
// reads with a key and with a JWT, sent to the node that does not write
// its shard, reach the one that does.
func TestClusterRoutesEveryKindOfRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and server processes")
	}
	const shards = 2
	pgURL, dir, creds := newCluster(t, "routes", shards)
	// Both nodes given one --node by mistake: each is still itself.
	args := []string{"--postgres", pgURL, "--shards", fmt.Sprint(shards), "--node", "twin"}
	a, b := startNode(t, dir, "a", nil, args...), startNode(t, dir, "b", nil, args...)
	leaderOf := map[string]*clusterNode{}
	for len(leaderOf) < shards {
		select {
		case r := <-a.roles:
			leaderOf[r] = a
		case r := <-b.roles:
			leaderOf[r] = b
		case <-time.After(time.Minute):
			t.Fatalf("shards led after a minute: %v", leaderOf)
		}
	}
	for i, c := range creds {
		other := a
		if leaderOf[fmt.Sprintf("leading shard/s%d", i)] == a {
			other = b
		}
		ts := other.client(t, c)
		put := ts.putBatch(specBatch(t, "varied.json", ""), c.APIKey)
		id, _ := put.Body["batch_id"].(string)
		if put.Status != http.StatusOK || id == "" {
			t.Fatalf("%s: PUT a batch through %s: %d %s", c.PartnerID, other.name, put.Status, put.Raw)
		}
		if st := ts.waitBatch(c.APIKey, id); st["status"] != "success" {
			t.Fatalf("%s: batch %v", c.PartnerID, st)
		}
		now := time.Now()
		token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Issuer: c.PartnerID, Subject: "42",
			Audience: jwt.ClaimStrings{c.PartnerID + ".example"}, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}).SignedString([]byte(c.APIKey))
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodGet, other.http+"/api/v2/users/42/transactions", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if got, err := send(req); err != nil || got.Status != http.StatusOK || !strings.Contains(got.Raw, `"reference_id": "t3"`) {
			t.Errorf("%s: transactions with a JWT through %s: %v %d %s", c.PartnerID, other.name, err, got.Status, got.Raw)
		}
		if u := ts.call("GET", "/api/v2/users/42", nil, c.APIKey); u.Status != http.StatusOK || !strings.Contains(u.Raw, "Renée") {
			t.Errorf("%s: user with a key through %s: %d %s", c.PartnerID, other.name, u.Status, u.Raw)
		}
	}
	// flatfiler sql reaches each shard's leader while it runs (admin.json,
	// in the shard's directory, names it).
	for i := range shards {
		db := filepath.Join(dir, "shards", fmt.Sprintf("s%d", i), "warehouse.duckdb")
		if code, out, errOut := runCLI(t, "sql", "--db", db, "--format", "csv", "SELECT count(*) AS n FROM ingests"); code != 0 || out != "n\n1\n" {
			t.Errorf("sql on shard s%d while it is led: %d %q %s", i, code, out, errOut)
		}
	}
	// Each shard holds its own partner's rows only.
	for _, n := range []*clusterNode{a, b} {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		_ = n.cmd.Wait()
	}
	for i := range shards {
		db := filepath.Join(dir, "shards", fmt.Sprintf("s%d", i), "warehouse.duckdb")
		want := fmt.Sprintf("partner_id\n%s\n", creds[i].PartnerID)
		if code, out, errOut := runCLI(t, "sql", "--db", db, "--format", "csv", "SELECT DISTINCT partner_id FROM users"); code != 0 || out != want {
			t.Errorf("shard s%d's users: %d %q %s; want %q", i, code, out, errOut, want)
		}
	}
}

// TestClusterSurvivorWritesEveryShard: with two shards and two nodes, one
// node killed, the survivor takes the dead node's shard too (after giving
// a spare its chance), and writes and answers for both: files, reads,
// readiness and each shard's metrics.
func TestClusterSurvivorWritesEveryShard(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and server processes")
	}
	const shards = 2
	pgURL, dir, creds := newCluster(t, "survivor", shards)
	const ttl = 3 * time.Second
	args := []string{"--postgres", pgURL, "--shards", fmt.Sprint(shards), "--lease-ttl", ttl.String()}
	a, b := startNode(t, dir, "a", nil, args...), startNode(t, dir, "b", nil, args...)
	a.await(t, "leading", time.Minute)
	b.await(t, "leading", time.Minute)
	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = b.cmd.Wait()
	killed := time.Now()
	a.await(t, "leading", time.Minute)
	took := time.Since(killed)
	t.Logf("the survivor took the second shard %s after the kill (TTL %s, then 2 TTLs for a spare)", took.Round(time.Millisecond), ttl)
	if bound := 4*ttl + 10*time.Second; took > bound {
		t.Errorf("took %s; want under %s", took, bound)
	}

	for i, c := range creds {
		sum := uploadTo(t, a, c, []string{"combined.xml"}, [][]byte{specFile(t, "combined.xml")})[0]
		ts := a.client(t, c)
		answer := ts.notify(c.APIKey, []string{"combined.xml"}, []string{sum})
		if answer.Status != http.StatusAccepted {
			t.Fatalf("%s: notify: %d %s", c.PartnerID, answer.Status, answer.Raw)
		}
		// The spec's sample has one account without a type.
		if j := ts.waitJob(c.APIKey, jobIDs(t, answer)[0]); j["status"] != "partial-success" {
			t.Errorf("%s (shard s%d): %v", c.PartnerID, i, j)
		}
	}
	// flatfiler sql reaches each shard's warehouse on the one node.
	for i := range shards {
		db := filepath.Join(dir, "shards", fmt.Sprintf("s%d", i), "warehouse.duckdb")
		want := fmt.Sprintf("partner_id\n%s\n", creds[i].PartnerID)
		if code, out, errOut := runCLI(t, "sql", "--db", db, "--format", "csv", "SELECT DISTINCT partner_id FROM users"); code != 0 || out != want {
			t.Errorf("sql on shard s%d: %d %q %s; want %q", i, code, out, errOut, want)
		}
	}
	ready := a.client(t, creds[0]).call("GET", "/readyz", nil, "")
	if ready.Status != http.StatusOK {
		t.Errorf("readyz of the node writing both shards: %d %s", ready.Status, ready.Raw)
	}
	metrics := a.client(t, creds[0]).call("GET", "/metrics", nil, "")
	for _, want := range []string{"flatfiler_cluster_leader 2",
		`flatfiler_jobs_finished_total{shard="s0",status="partial-success"} 1`, `flatfiler_jobs_finished_total{shard="s1",status="partial-success"} 1`} {
		if !strings.Contains(metrics.Raw, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
