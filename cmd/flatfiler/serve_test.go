package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/flatfiler/flatfiler/intake/partner"
)

// testServer is serve started in-process on random ports over a temporary
// data directory.
type testServer struct {
	*service
	t      *testing.T
	demo   partner.Credentials
	base   string // http://host:port
	logBuf *syncWriter
}

func startTestServer(t *testing.T, dir string, tweak ...func(*serveConfig)) *testServer {
	t.Helper()
	logs := &syncWriter{w: &bytes.Buffer{}}
	cfg := serveConfig{
		Data: dir, SFTPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", MemoryLimit: "128MB", Workers: 1,
		MaxFileSize: 1 << 30, Quota: 4 << 30, IdleTimeout: time.Minute, Retention: time.Hour,
		Grace: 50 * time.Millisecond, FailureDelay: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range tweak {
		f(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := startService(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		<-s.Done()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	ts := &testServer{service: s, t: t, base: "http://" + s.httpLn.Addr().String(), logBuf: logs}
	if s.demo != nil {
		ts.demo = *s.demo
	}
	return ts
}

func (ts *testServer) shutdown() {
	ts.cancel()
	ts.stop()
}

// syncWriter lets the server's goroutines share a log buffer.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

// dialSFTP logs in with a password (or key) through a real SSH connection,
// checking the server's host key against the fingerprints it printed.
func (ts *testServer) dialSFTP(user string, auth ssh.AuthMethod) (*sftp.Client, *ssh.Client, error) {
	fps := ts.sftp.Fingerprints()
	return dialSFTP(ts.sftpLn.Addr().String(), user, auth, func(_ string, _ net.Addr, key ssh.PublicKey) error {
		if slices.Contains(fps, key.Type()+" "+ssh.FingerprintSHA256(key)) {
			return nil
		}
		return errors.New("unknown host key")
	})
}

func dialSFTP(addr, user string, auth ssh.AuthMethod, hostKey ssh.HostKeyCallback) (*sftp.Client, *ssh.Client, error) {
	cfg := &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{auth}, Timeout: 10 * time.Second, HostKeyCallback: hostKey}
	conn, err := ssh.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, nil, err
	}
	client, err := sftp.NewClient(conn, sftp.UseConcurrentWrites(true))
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return client, conn, nil
}

func (ts *testServer) mustSFTP(creds partner.Credentials) *sftp.Client {
	ts.t.Helper()
	c, conn, err := ts.dialSFTP(creds.SFTPUser, ssh.Password(creds.SFTPPassword))
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { c.Close(); conn.Close() })
	return c
}

func upload(t *testing.T, c *sftp.Client, name string, data []byte) string {
	t.Helper()
	f, err := c.Create(name)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close %s: %v", name, err)
	}
	sum := md5.Sum(data)
	return hex.EncodeToString(sum[:])
}

type apiAnswer struct {
	Status int
	Body   map[string]any
	Raw    string
}

func (ts *testServer) call(method, path string, params url.Values, key string) apiAnswer {
	ts.t.Helper()
	a, err := ts.tryCall(method, path, params, key)
	if err != nil {
		ts.t.Fatal(err)
	}
	return a
}

// tryCall is call for a server that may die before it answers.
func (ts *testServer) tryCall(method, path string, params url.Values, key string) (apiAnswer, error) {
	u := ts.base + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, _ := http.NewRequest(method, u, nil)
	if key != "" {
		req.SetBasicAuth(key, "")
	}
	return send(req)
}

// send makes a request and reads its answer; the error is the transport's.
func send(req *http.Request) (apiAnswer, error) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return apiAnswer{}, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := apiAnswer{Status: resp.StatusCode, Raw: string(raw)}
	_ = json.Unmarshal(raw, &a.Body)
	return a, nil
}

func notification(key string, names, hashes []string, extra ...string) url.Values {
	q := url.Values{"api_key": {key}, "filenames": {strings.Join(names, ",")}, "hashes": {strings.Join(hashes, ",")}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return q
}

func (ts *testServer) notify(key string, names, hashes []string, extra ...string) apiAnswer {
	ts.t.Helper()
	return ts.call(http.MethodPost, "/api/v2/uploads/received", notification(key, names, hashes, extra...), "")
}

// tryNotify notifies a server that may die before it answers: nil then.
func (ts *testServer) tryNotify(key string, names, hashes []string) *apiAnswer {
	a, err := ts.tryCall(http.MethodPost, "/api/v2/uploads/received", notification(key, names, hashes), "")
	if err != nil {
		return nil
	}
	return &a
}

func jobIDs(t *testing.T, a apiAnswer) []string {
	t.Helper()
	var ids []string
	uploads, _ := a.Body["uploads"].([]any)
	for _, u := range uploads {
		ids = append(ids, u.(map[string]any)["job_id"].(string))
	}
	if len(ids) == 0 {
		t.Fatalf("no jobs in answer %d: %s", a.Status, a.Raw)
	}
	return ids
}

// waitJob polls a job until it is final and returns it.
func (ts *testServer) waitJob(key, id string) map[string]any {
	ts.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		a := ts.call(http.MethodGet, "/api/v2/uploads/"+id, nil, key)
		if a.Status != http.StatusOK {
			ts.t.Fatalf("job %s: %d %s", id, a.Status, a.Raw)
		}
		job := a.Body["upload"].(map[string]any)
		if s := job["status"]; s != "queued" && s != "processing" {
			return job
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.t.Fatalf("job %s did not finish", id)
	return nil
}

func (ts *testServer) query(q string) string {
	ts.t.Helper()
	var out bytes.Buffer
	if err := ts.store.Query(context.Background(), q, "csv", &out); err != nil {
		ts.t.Fatalf("%s: %v", q, err)
	}
	return out.String()
}

func specFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("../../fixtures/spec", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestUploadNotifyIngest(t *testing.T) {
	ts := startTestServer(t, t.TempDir())
	c := ts.mustSFTP(ts.demo)
	h1 := upload(t, c, "combined.xml", specFile(t, "combined.xml"))
	h2 := upload(t, c, "accounts.xml", specFile(t, "accounts.xml"))

	// The spec's own example spells the parameter "hash" and the types
	// singular; hex digits may come in either case.
	q := url.Values{"filenames": {"combined.xml,accounts.xml"}, "hash": {strings.ToUpper(h1) + "," + h2}, "types": {"combined,account"}}
	a := ts.call(http.MethodPost, "/api/v2/uploads/received", q, ts.demo.APIKey)
	if a.Status != http.StatusAccepted {
		t.Fatalf("notify: %d %s", a.Status, a.Raw)
	}
	ids := jobIDs(t, a)
	if len(ids) != 2 {
		t.Fatalf("want one job per file: %s", a.Raw)
	}
	// The accounts file is applied after the combined one, as listed: its
	// account finds its user, created by the combined file.
	for i, want := range []string{"partial-success", "success"} {
		job := ts.waitJob(ts.demo.APIKey, ids[i])
		if job["status"] != want || job["bytes_done"] != job["bytes_total"] {
			t.Errorf("job %d: status %v, want %s: %v", i, job["status"], want, job)
		}
	}
	if got := ts.query("SELECT count(*) FROM accounts"); got != "count_star()\n12\n" {
		t.Errorf("accounts stored: %q", got)
	}
	if got := ts.query("SELECT count(*) FROM ingests WHERE job_id IS NOT NULL"); got != "count_star()\n2\n" {
		t.Errorf("ingests rows: %q", got)
	}
	// Accepted files left the SFTP folder: an overwrite cannot change what was processed.
	if entries, err := c.ReadDir("/"); err != nil || len(entries) != 0 {
		t.Errorf("SFTP folder after notification: %v %v", entries, err)
	}
	archived, _ := filepath.Glob(filepath.Join(ts.cfg.Data, "jobs/archive/demo/*/*"))
	if len(archived) != 2 {
		t.Errorf("archived files: %v", archived)
	}

	// The same notification again returns the same jobs and ingests nothing.
	again := ts.call(http.MethodPost, "/api/v2/uploads/received", q, ts.demo.APIKey)
	if again.Status != http.StatusAccepted || !slices.Equal(jobIDs(t, again), ids) || again.Body["duplicate"] != true {
		t.Errorf("repeated notification: %d %s", again.Status, again.Raw)
	}
	list := ts.call(http.MethodGet, "/api/v2/uploads", nil, ts.demo.APIKey)
	if n := len(list.Body["uploads"].([]any)); n != 2 {
		t.Errorf("GET /api/v2/uploads lists %d jobs, want 2", n)
	}
}

func TestNotificationIsRefusedWhole(t *testing.T) {
	ts := startTestServer(t, t.TempDir())
	c := ts.mustSFTP(ts.demo)
	good := upload(t, c, "users.xml", specFile(t, "users.xml"))
	upload(t, c, "accounts.xml", specFile(t, "accounts.xml"))
	wrong := strings.Repeat("0", 32)

	tests := []struct {
		name   string
		key    string
		params url.Values
		status int
		want   []string // in the error message
	}{
		{"wrong key", "nope", url.Values{"filenames": {"users.xml"}, "hashes": {good}}, 401, []string{"API key"}},
		{"no key", "", url.Values{"filenames": {"users.xml"}, "hashes": {good}}, 401, []string{"API key"}},
		{"MD5 mismatch on one file", ts.demo.APIKey, url.Values{"filenames": {"users.xml,accounts.xml"}, "hashes": {good + "," + wrong}}, 422,
			[]string{"accounts.xml", "MD5 mismatch", wrong, "notified"}},
		{"missing file", ts.demo.APIKey, url.Values{"filenames": {"users.xml,nothere.xml"}, "hashes": {good + "," + good}}, 404, []string{"nothere.xml"}},
		{"parent directory", ts.demo.APIKey, url.Values{"filenames": {"../users.xml"}, "hashes": {good}}, 400, []string{"../users.xml", "not a path"}},
		{"absolute path", ts.demo.APIKey, url.Values{"filenames": {"/etc/passwd"}, "hashes": {good}}, 400, []string{"/etc/passwd"}},
		{"subdirectory", ts.demo.APIKey, url.Values{"filenames": {"in/users.xml"}, "hashes": {good}}, 400, []string{"in/users.xml"}},
		{"backslash", ts.demo.APIKey, url.Values{"filenames": {`..\users.xml`}, "hashes": {good}}, 400, []string{`..\\users.xml`}},
		{"lengths differ", ts.demo.APIKey, url.Values{"filenames": {"users.xml,accounts.xml"}, "hashes": {good}}, 400, []string{"2 filenames but 1 hashes"}},
		{"not an MD5", ts.demo.APIKey, url.Values{"filenames": {"users.xml"}, "hashes": {"abc"}}, 400, []string{"not an MD5"}},
		{"unknown type", ts.demo.APIKey, url.Values{"filenames": {"users.xml"}, "hashes": {good}, "types": {"balances"}}, 400, []string{"balances"}},
		{"no files", ts.demo.APIKey, url.Values{}, 400, []string{"filenames is required"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := url.Values{"api_key": {tc.key}}
			for k, v := range tc.params {
				q[k] = v
			}
			a := ts.call(http.MethodPost, "/api/v2/uploads/received", q, "")
			if a.Status != tc.status {
				t.Errorf("status %d, want %d: %s", a.Status, tc.status, a.Raw)
			}
			for _, w := range tc.want {
				if !strings.Contains(a.Raw, w) {
					t.Errorf("error does not mention %q: %s", w, a.Raw)
				}
			}
			if _, ok := a.Body["error"].(map[string]any)["message"]; !ok {
				t.Errorf("not the spec's error shape: %s", a.Raw)
			}
		})
	}
	// However many files are wrong, the answer lists 100 and counts them all.
	var names, sums []string
	for i := range 10_000 {
		names, sums = append(names, fmt.Sprintf("f%05d.xml", i)), append(sums, wrong)
	}
	big := ts.call(http.MethodPost, "/api/v2/uploads/received", url.Values{"api_key": {ts.demo.APIKey},
		"filenames": {strings.Join(names, ",")}, "hashes": {strings.Join(sums, ",")}}, "")
	e, _ := big.Body["error"].(map[string]any)
	data, _ := e["data"].([]any)
	if big.Status != http.StatusNotFound || len(data) != 100 || e["count"] != 10_000.0 || len(big.Raw) > 64<<10 ||
		!strings.Contains(e["message"].(string), "and 9997 more") {
		t.Errorf("10,000 missing files: status %d, %d data entries, count %v, %d bytes: %.300s", big.Status, len(data), e["count"], len(big.Raw), big.Raw)
	}
	// Nothing was queued, and both files are still where they were uploaded.
	if list := ts.call(http.MethodGet, "/api/v2/uploads", nil, ts.demo.APIKey); len(list.Body["uploads"].([]any)) != 0 {
		t.Errorf("jobs after refused notifications: %s", list.Raw)
	}
	entries, _ := c.ReadDir("/")
	if len(entries) != 2 {
		t.Errorf("files after refused notifications: %d, want 2", len(entries))
	}
}

func TestPartnersAreConfined(t *testing.T) {
	ts := startTestServer(t, t.TempDir())
	other, err := ts.partners.Add("otherbank", partner.NewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	demo, theirs := ts.mustSFTP(ts.demo), ts.mustSFTP(other)
	secret := upload(t, demo, "users.xml", specFile(t, "users.xml"))

	// The other partner sees an empty folder and cannot reach demo's file
	// by any path.
	if entries, err := theirs.ReadDir("/"); err != nil || len(entries) != 0 {
		t.Errorf("other partner lists %v (%v)", entries, err)
	}
	for _, path := range []string{"users.xml", "../demo/users.xml", "/../demo/users.xml", "/demo/users.xml", `..\demo\users.xml`, "/etc/passwd", "../../partners/demo.json"} {
		if f, err := theirs.Open(path); err == nil {
			f.Close()
			t.Errorf("other partner opened %q", path)
		}
		if f, err := theirs.Create(path); err == nil {
			f.Close()
			if path != "users.xml" {
				t.Errorf("other partner created %q", path)
			}
		}
	}
	// Its own users.xml (created above, empty) is its own: demo's is intact.
	if fi, err := demo.Stat("users.xml"); err != nil || fi.Size() != int64(len(specFile(t, "users.xml"))) {
		t.Errorf("demo's file changed: %v %v", fi, err)
	}
	// Links and directories are refused.
	if err := theirs.Symlink("/etc/passwd", "link.xml"); err == nil {
		t.Error("symlink created")
	}
	if err := theirs.Link("users.xml", "hard.xml"); err == nil {
		t.Error("hard link created")
	}
	if err := theirs.Mkdir("sub"); err == nil {
		t.Error("directory created")
	}
	// Notifying demo's file with the other partner's key finds nothing.
	a := ts.notify(other.APIKey, []string{"users.xml"}, []string{secret})
	if a.Status == http.StatusAccepted {
		t.Errorf("other partner notified demo's file: %s", a.Raw)
	}
	// And demo's jobs are not the other partner's to see.
	ok := ts.notify(ts.demo.APIKey, []string{"users.xml"}, []string{secret})
	id := jobIDs(t, ok)[0]
	if a := ts.call(http.MethodGet, "/api/v2/uploads/"+id, nil, other.APIKey); a.Status != http.StatusNotFound {
		t.Errorf("other partner read demo's job: %d", a.Status)
	}
	ts.waitJob(ts.demo.APIKey, id)
}

func TestInterruptedUploadIsNeverPublished(t *testing.T) {
	ts := startTestServer(t, t.TempDir())
	c, conn, err := ts.dialSFTP(ts.demo.SFTPUser, ssh.Password(ts.demo.SFTPPassword))
	if err != nil {
		t.Fatal(err)
	}
	data := specFile(t, "combined.xml")
	f, err := c.Create("combined.xml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}
	// The connection drops with the file open: no close ever arrives.
	conn.Close()
	c.Close()

	sum := md5.Sum(data[:len(data)/2])
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := ts.notify(ts.demo.APIKey, []string{"combined.xml"}, []string{hex.EncodeToString(sum[:])})
		if a.Status != http.StatusNotFound {
			t.Fatalf("notifying a broken upload: %d %s", a.Status, a.Raw)
		}
		if strings.Contains(ts.logBuf.String(), "outcome=aborted") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(ts.logBuf.String(), "outcome=aborted") {
		t.Error("the server did not log the aborted upload")
	}
	leftovers, _ := os.ReadDir(filepath.Join(ts.cfg.Data, "sftp", "demo"))
	if len(leftovers) != 0 {
		t.Errorf("left in the folder: %v", leftovers)
	}
}

func TestSFTPClientBehaviours(t *testing.T) {
	ts := startTestServer(t, t.TempDir(), func(c *serveConfig) { c.MaxFileSize = 20_000; c.Quota = 30_000 })
	c := ts.mustSFTP(ts.demo)
	data := specFile(t, "combined.xml") // 13 KB

	// WinSCP and others upload name.filepart, then rename: the notification
	// finds the file under its final name, with the MD5 taken on arrival.
	sum := upload(t, c, "combined.xml.filepart", data)
	if err := c.PosixRename("combined.xml.filepart", "combined.xml"); err != nil {
		t.Fatal(err)
	}
	got, err := c.Open("combined.xml")
	if err != nil {
		t.Fatal(err)
	}
	back, _ := io.ReadAll(got)
	got.Close()
	if !bytes.Equal(back, data) {
		t.Error("download differs from upload")
	}
	// Limits: a file past the maximum size, then past the quota.
	f, _ := c.Create("big.xml")
	if _, err := f.Write(make([]byte, 20_001)); err == nil || !strings.Contains(err.Error(), "maximum file size") {
		t.Errorf("write past max file size: %v", err)
	}
	f.Close()
	f, _ = c.Create("second.xml")
	if _, err := f.Write(make([]byte, 18_000)); err == nil || !strings.Contains(err.Error(), "quota") {
		t.Errorf("write past quota: %v", err)
	}
	f.Close()
	if _, err := c.Stat("big.xml"); err == nil {
		t.Error("refused upload was published")
	}
	a := ts.notify(ts.demo.APIKey, []string{"combined.xml"}, []string{sum})
	if job := ts.waitJob(ts.demo.APIKey, jobIDs(t, a)[0]); job["status"] != "partial-success" {
		t.Errorf("job: %v", job)
	}
}

// Ten failed passwords for one user from one address ban that address for
// that user only: another partner behind the same address (a bank's NAT)
// still logs in. The ban outlives a restart, is listed, and lifted by
// flatfiler ban remove while the server runs.
func TestAuthFailuresSlowDownThenBan(t *testing.T) {
	dir := t.TempDir()
	ts := startTestServer(t, dir)
	other, err := ts.partners.Add("otherbank", partner.NewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, _, err := ts.dialSFTP("demo", ssh.Password("wrong")); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	if _, _, err := ts.dialSFTP("demo", ssh.Password(ts.demo.SFTPPassword)); err == nil {
		t.Error("a banned address and user logged in")
	}
	if c, conn, err := ts.dialSFTP(other.SFTPUser, ssh.Password(other.SFTPPassword)); err != nil {
		t.Errorf("another partner at the same address was locked out: %v", err)
	} else {
		c.Close()
		conn.Close()
	}
	if !strings.Contains(ts.logBuf.String(), "sftp login banned") {
		t.Error("ban not logged")
	}
	metrics := ts.call(http.MethodGet, "/metrics", nil, "").Raw
	for _, want := range []string{`flatfiler_sftp_auth_failures_total{method="password"} 10`, "flatfiler_sftp_bans_total 1", "flatfiler_sftp_refused_logins_total 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// Kept across a restart.
	demo := ts.demo
	ts.shutdown()
	ts = startTestServer(t, dir)
	if _, _, err := ts.dialSFTP("demo", ssh.Password(demo.SFTPPassword)); err == nil {
		t.Error("a restart lifted the ban")
	}
	code, out, errOut := runCLI(t, "ban", "list", "--data", dir)
	if code != 0 || !strings.Contains(out, "127.0.0.1") || !strings.Contains(out, "demo") || strings.Contains(out, "otherbank") {
		t.Errorf("ban list: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := runCLI(t, "ban", "remove", "127.0.0.1", "demo", "--data", dir); code != 0 || !strings.Contains(out, "lifted 1") {
		t.Errorf("ban remove: exit %d %s%s", code, out, errOut)
	}
	c, conn, err := ts.dialSFTP("demo", ssh.Password(demo.SFTPPassword))
	if err != nil {
		t.Fatalf("after ban remove the partner is still refused: %v", err)
	}
	c.Close()
	conn.Close()
	if code, out, _ := runCLI(t, "ban", "list", "--json", "--data", dir); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("bans after removal: %s", out)
	}
}

// Many user names that are no partner's, from one address, ban the
// scanning: known partners at that address are not touched.
func TestScannerOfUserNamesIsBannedAlone(t *testing.T) {
	ts := startTestServer(t, t.TempDir())
	for i := range 10 {
		if _, _, err := ts.dialSFTP(fmt.Sprintf("guess%d", i), ssh.Password("x")); err == nil {
			t.Fatal("an unknown user logged in")
		}
	}
	if !strings.Contains(ts.logBuf.String(), "user names that are no partner's") {
		t.Errorf("scanner not banned:\n%s", ts.logBuf.String())
	}
	c, conn, err := ts.dialSFTP("demo", ssh.Password(ts.demo.SFTPPassword))
	if err != nil {
		t.Fatalf("a partner at the scanner's address was locked out: %v", err)
	}
	c.Close()
	conn.Close()
}

func TestPublicKeyLogin(t *testing.T) {
	dir := t.TempDir()
	ts := startTestServer(t, dir)
	signer, pub := newClientKey(t)
	keyFile := filepath.Join(dir, "id.pub")
	os.WriteFile(keyFile, pub, 0o644)
	code, out, errOut := runCLI(t, "partner", "add", "keybank", "--data", dir, "--ssh-key", keyFile, "--json", "--domain", "fi.keybank.example")
	if code != 0 {
		t.Fatalf("partner add: %d %s", code, errOut)
	}
	var creds partner.Credentials
	if err := json.Unmarshal([]byte(out), &creds); err != nil || creds.APIKey == "" || creds.SFTPUser != "keybank" || creds.SFTPPassword == "" {
		t.Fatalf("partner add --json: %q %v", out, err)
	}
	// The running server sees the new partner without a restart.
	c, conn, err := ts.dialSFTP("keybank", ssh.PublicKeys(signer))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer c.Close()
	sum := upload(t, c, "users.xml", specFile(t, "users.xml"))
	a := ts.notify(creds.APIKey, []string{"users.xml"}, []string{sum})
	if ts.waitJob(creds.APIKey, jobIDs(t, a)[0])["status"] != "success" {
		t.Error("keybank's job failed")
	}
	// The SFTP password is stored hashed; the API key is kept, since it is
	// the HMAC secret of the partner's JWTs; only the owner reads the file.
	info, _ := os.Stat(filepath.Join(dir, "partners", "keybank.json"))
	stored, _ := os.ReadFile(filepath.Join(dir, "partners", "keybank.json"))
	if info.Mode().Perm() != 0o600 || bytes.Contains(stored, []byte(creds.SFTPPassword)) {
		t.Errorf("partner file mode %v, holds the SFTP password in the clear: %v", info.Mode(), bytes.Contains(stored, []byte(creds.SFTPPassword)))
	}
	if code, _, _ := runCLI(t, "partner", "add", "keybank", "--data", dir); code == 0 {
		t.Error("adding an existing partner succeeded")
	}

	// partner set changes what GET partners/current shows, on the running
	// server, and keeps the rest of the record.
	modules := filepath.Join(dir, "modules.json")
	os.WriteFile(modules, []byte(`{"mobile": {"name": "Mobile Money Manager", "logout_url": "https://www.example.com/logout"}}`), 0o644)
	if code, _, errOut := runCLI(t, "partner", "set", "keybank", "--data", dir, "--product-name", "Money Manager", "--modules", modules); code != 0 {
		t.Fatalf("partner set: %d %s", code, errOut)
	}
	a = ts.call(http.MethodGet, "/api/v2/partners/current", nil, creds.APIKey)
	var current struct {
		Partners []struct {
			ID          json.Number `json:"id"`
			Domain      string      `json:"domain"`
			ProductName string      `json:"product_name"`
			Modules     map[string]struct {
				Name      string `json:"name"`
				LogoutURL string `json:"logout_url"`
			} `json:"modules"`
		} `json:"partners"`
	}
	if err := json.Unmarshal([]byte(a.Raw), &current); err != nil || a.Status != 200 || len(current.Partners) != 1 {
		t.Fatalf("partners/current: %d %s", a.Status, a.Raw)
	}
	if p := current.Partners[0]; p.Domain != "fi.keybank.example" || p.ProductName != "Money Manager" || p.ID.String() == "" ||
		p.Modules["mobile"].Name != "Mobile Money Manager" || p.Modules["mobile"].LogoutURL != "https://www.example.com/logout" {
		t.Errorf("partners/current after partner set: %s", a.Raw)
	}
	if code, _, _ := runCLI(t, "partner", "set", "nobody", "--data", dir, "--product-name", "x"); code == 0 {
		t.Error("partner set of an unknown partner succeeded")
	}
	if code, _, _ := runCLI(t, "partner", "set", "keybank", "--data", dir); code != 2 {
		t.Error("partner set without a change did not ask for one")
	}
	// The key still works: the record was changed, not replaced.
	c2, conn2, err := ts.dialSFTP("keybank", ssh.PublicKeys(signer))
	if err != nil {
		t.Fatalf("the SSH key after partner set: %v", err)
	}
	c2.Close()
	conn2.Close()
}

func TestIdleSessionsAreClosedButTransfersAreActivity(t *testing.T) {
	ts := startTestServer(t, t.TempDir(), func(c *serveConfig) { c.IdleTimeout = 300 * time.Millisecond })
	c := ts.mustSFTP(ts.demo)
	// A slow transfer: a write every 100 ms for 1 s, longer than the timeout.
	f, err := c.Create("slow.xml")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := f.Write([]byte("<users></users>\n")); err != nil {
			t.Fatalf("write %d during an active transfer: %v", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := c.ReadDir("/"); err == nil {
		t.Error("idle session still open")
	}
}

func TestMetricsPassPromtool(t *testing.T) {
	ts := startTestServer(t, t.TempDir())
	c := ts.mustSFTP(ts.demo)
	sum := upload(t, c, "combined.xml", specFile(t, "combined.xml"))
	ts.waitJob(ts.demo.APIKey, jobIDs(t, ts.notify(ts.demo.APIKey, []string{"combined.xml"}, []string{sum}))[0])
	ts.notify("wrong", []string{"x.xml"}, []string{sum})

	scrape := ts.call(http.MethodGet, "/metrics", nil, "").Raw
	for _, want := range []string{
		"flatfiler_sftp_sessions_total 1", "flatfiler_sftp_received_bytes_total 13393",
		`flatfiler_sftp_uploads_total{outcome="published"} 1`,
		`flatfiler_notifications_total{outcome="accepted"} 1`, `flatfiler_notifications_total{outcome="unauthorized"} 1`,
		`flatfiler_jobs{state="partial-success"} 1`, "flatfiler_job_queue_depth 0",
		`flatfiler_jobs_finished_total{status="partial-success"} 1`, "flatfiler_job_duration_seconds_count 1",
		`flatfiler_ingest_records_total{kind="account",outcome="error"} 1`, "flatfiler_ingest_bytes_total 13393",
		`flatfiler_ingest_stage_duration_seconds_count{stage="commit"} 1`,
	} {
		if !strings.Contains(scrape, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not installed (make test installs Debian's prometheus package): %v", err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(scrape)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func newClientKey(t *testing.T) (ssh.Signer, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer, ssh.MarshalAuthorizedKey(signer.PublicKey())
}

func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("FLATFILER_SFTP_ADDR", "0.0.0.0:2222")
	t.Setenv("FLATFILER_MAX_FILE_SIZE", "2GiB")
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	sftpAddr := fs.String("sftp-addr", "127.0.0.1:2022", "")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "")
	var size int64
	fs.Var(sizeFlag{&size}, "max-file-size", "")
	if err := applyEnv(fs); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"--http-addr", ":9090"}); err != nil {
		t.Fatal(err)
	}
	if *sftpAddr != "0.0.0.0:2222" || *httpAddr != ":9090" || size != 2<<30 {
		t.Errorf("sftp %s, http %s, size %d", *sftpAddr, *httpAddr, size)
	}
	t.Setenv("FLATFILER_MAX_FILE_SIZE", "lots")
	if err := applyEnv(fs); err == nil || !strings.Contains(err.Error(), "FLATFILER_MAX_FILE_SIZE") {
		t.Errorf("bad env value: %v", err)
	}
}
