package inbox

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openBox(t *testing.T, lim Limits) (*Inbox, *Box) {
	t.Helper()
	ib, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ib.Close() })
	b, err := ib.Box("acme", lim)
	if err != nil {
		t.Fatal(err)
	}
	return ib, b
}

func wantSums(data []byte) Sums {
	m, s := md5.Sum(data), sha256.Sum256(data)
	return Sums{Size: int64(len(data)), MD5: hex.EncodeToString(m[:]), SHA256: hex.EncodeToString(s[:])}
}

// chunk is one write of a test's pattern: data[off:off+n], or as many
// bytes of garbage that a later write replaces.
type chunk struct {
	off, n  int
	garbage bool
}

func chunks(size, n int) []chunk {
	var out []chunk
	for off := 0; off < size; off += n {
		out = append(out, chunk{off: off, n: min(n, size-off)})
	}
	return out
}

func TestHashesFollowOutOfOrderWrites(t *testing.T) {
	data := make([]byte, 1<<20+123)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.IntN(256))
	}
	shuffledWithin := func(window int) []chunk {
		c := chunks(len(data), 32<<10)
		for i := 0; i < len(c); i += window {
			w := c[i:min(i+window, len(c))]
			rng.Shuffle(len(w), func(a, b int) { w[a], w[b] = w[b], w[a] })
		}
		return c
	}
	reversed := chunks(len(data), 32<<10)
	for i, j := 0, len(reversed)-1; i < j; i, j = i+1, j-1 {
		reversed[i], reversed[j] = reversed[j], reversed[i]
	}
	rewrite := append(chunks(len(data), 32<<10), chunk{off: 100, n: 5000})
	// Garbage is held for [64K, 64K+100), then real bytes overwrite it from
	// an earlier offset: hashing the held copy when the prefix reaches 64K
	// would hash garbage.
	overlapping := []chunk{{off: 64 << 10, n: 100, garbage: true}, {off: 64<<10 - 50, n: 150}, {off: 0, n: 32 << 10}, {off: 32 << 10, n: 32 << 10}}
	for _, c := range chunks(len(data)-(64<<10+100), 32<<10) {
		overlapping = append(overlapping, chunk{off: c.off + 64<<10 + 100, n: c.n})
	}
	tests := []struct {
		name        string
		writes      []chunk
		pendingCap  int64
		concurrent  bool
		wantCatchUp bool // the hash could not follow on arrival
	}{
		{name: "in order", writes: chunks(len(data), 32<<10)},
		{name: "8 in flight, shuffled", writes: shuffledWithin(8)},
		{name: "64 in flight, shuffled", writes: shuffledWithin(64)},
		{name: "concurrent writers", writes: shuffledWithin(8), concurrent: true},
		{name: "tiny writes", writes: chunks(len(data), 7)},
		{name: "reversed, within the pending cap", writes: reversed},
		{name: "reversed, past the pending cap", writes: reversed, pendingCap: 256 << 10, wantCatchUp: true},
		{name: "rewrite of hashed bytes", writes: rewrite, wantCatchUp: true},
		{name: "overlapping pending writes", writes: overlapping, wantCatchUp: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, b := openBox(t, Limits{})
			if tc.pendingCap > 0 {
				b.pendingCap = tc.pendingCap
			}
			u, err := b.Create("data.xml")
			if err != nil {
				t.Fatal(err)
			}
			write := func(c chunk) {
				p := data[c.off : c.off+c.n]
				if c.garbage {
					p = bytes.Repeat([]byte{'x'}, c.n)
				}
				if _, err := u.WriteAt(p, int64(c.off)); err != nil {
					t.Error(err)
				}
			}
			if tc.concurrent {
				var wg sync.WaitGroup
				for i := 0; i < len(tc.writes); i += 8 {
					for _, c := range tc.writes[i:min(i+8, len(tc.writes))] {
						wg.Go(func() { write(c) })
					}
					wg.Wait()
				}
			} else {
				for _, c := range tc.writes {
					write(c)
				}
			}
			caughtUp := u.rewound || u.behind || u.hashed < int64(len(data))
			if caughtUp != tc.wantCatchUp && !tc.concurrent {
				t.Errorf("hash caught up at close = %v, want %v (hashed %d of %d)", caughtUp, tc.wantCatchUp, u.hashed, len(data))
			}
			if err := u.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := b.Sums("data.xml")
			if err != nil {
				t.Fatal(err)
			}
			if want := wantSums(data); got != want {
				t.Errorf("sums = %+v, want %+v", got, want)
			}
			if b.Used() != int64(len(data)) {
				t.Errorf("used = %d, want %d", b.Used(), len(data))
			}
		})
	}
}

func TestSidecarIsUsedOnlyForTheBytesItDescribes(t *testing.T) {
	_, b := openBox(t, Limits{})
	put(t, b, "a.xml", []byte("<users></users>"))
	sc, ok := b.readSidecar("a.xml")
	if !ok {
		t.Fatal("no sidecar after publish")
	}
	// A sidecar that lies is believed only while the file is the same file:
	// proof that Sums reads it rather than rehashing.
	sc.MD5 = "00000000000000000000000000000000"
	if err := b.root.WriteFile(sidecarName("a.xml"), mustJSON(t, sc), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Sums("a.xml"); got.MD5 != sc.MD5 {
		t.Fatalf("sums did not come from the sidecar: %s", got.MD5)
	}
	// Rewritten by other means: the sidecar no longer matches and is ignored.
	if err := os.WriteFile(filepath.Join(b.dir, "a.xml"), []byte("<users/>"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Sums("a.xml"); got != wantSums([]byte("<users/>")) {
		t.Errorf("stale sidecar trusted: %+v", got)
	}
}

func TestAbortedUploadIsNeverPublished(t *testing.T) {
	_, b := openBox(t, Limits{})
	put(t, b, "data.xml", []byte("old"))
	u, err := b.Create("data.xml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.WriteAt([]byte("new partial content"), 0); err != nil {
		t.Fatal(err)
	}
	u.TransferError(errors.New("connection lost"))
	if err := u.Close(); !errors.Is(err, ErrAborted) {
		t.Fatalf("close after transfer error = %v, want ErrAborted", err)
	}
	f, err := b.Open("data.xml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 100)
	n, _ := f.Read(buf)
	if string(buf[:n]) != "old" {
		t.Errorf("data.xml = %q after an aborted overwrite, want the old content", buf[:n])
	}
	files, _ := b.List()
	if len(files) != 1 {
		t.Errorf("listing shows %d files, want 1 (temporaries hidden)", len(files))
	}
	entries, _ := os.ReadDir(b.dir)
	for _, e := range entries {
		if e.Name() != "data.xml" && e.Name() != sidecarName("data.xml") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
	if b.Used() != 3 {
		t.Errorf("used = %d, want 3", b.Used())
	}
}

func TestLimits(t *testing.T) {
	_, b := openBox(t, Limits{MaxFileSize: 100, Quota: 150})
	u, _ := b.Create("big.xml")
	if _, err := u.WriteAt(make([]byte, 101), 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("write past max file size: %v, want ErrTooLarge", err)
	}
	u.Abort()
	put(t, b, "one.xml", make([]byte, 100))
	u, _ = b.Create("two.xml")
	if _, err := u.WriteAt(make([]byte, 60), 0); !errors.Is(err, ErrQuota) {
		t.Errorf("write past quota: %v, want ErrQuota", err)
	}
	u.Abort()
	if err := b.Remove("one.xml"); err != nil {
		t.Fatal(err)
	}
	put(t, b, "two.xml", make([]byte, 100))
	if b.Used() != 100 {
		t.Errorf("used = %d, want 100", b.Used())
	}
}

func TestNames(t *testing.T) {
	_, b := openBox(t, Limits{})
	for _, name := range []string{"../x.xml", "/etc/passwd", "a/b.xml", `a\b.xml`, ".hidden", "..", ".", "", ".upload-1", "a..b"} {
		if _, err := b.Create(name); !errors.Is(err, ErrBadName) {
			t.Errorf("Create(%q) = %v, want ErrBadName", name, err)
		}
	}
	for _, name := range []string{"data.xml", "2026-11-21_users.XML", "a.filepart", "A_b-c.1"} {
		if !ValidName(name) {
			t.Errorf("ValidName(%q) = false", name)
		}
	}
	// A symlink planted in the box (by someone with shell access) is not a
	// file a client can read, replace or notify.
	if err := os.Symlink("/etc/passwd", filepath.Join(b.dir, "link.xml")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Open("link.xml"); !errors.Is(err, ErrNotFile) {
		t.Errorf("open symlink = %v, want ErrNotFile", err)
	}
	if _, err := b.Create("link.xml"); !errors.Is(err, ErrNotFile) {
		t.Errorf("create over symlink = %v, want ErrNotFile", err)
	}
	if _, err := b.Take("link.xml", filepath.Join(t.TempDir(), "x")); !errors.Is(err, ErrNotFile) {
		t.Errorf("take symlink = %v, want ErrNotFile", err)
	}
}

func TestRenameCarriesTheSums(t *testing.T) {
	_, b := openBox(t, Limits{})
	content := []byte("<users><user/></users>")
	put(t, b, "data.xml.filepart", content)
	put(t, b, "data.xml", []byte("older"))
	if err := b.Rename("data.xml.filepart", "data.xml"); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.readSidecar("data.xml"); !ok {
		t.Error("sidecar not renamed with the file")
	}
	dst := filepath.Join(t.TempDir(), "taken")
	taken, err := b.Take("data.xml", dst)
	if err != nil {
		t.Fatal(err)
	}
	if taken.Sums != wantSums(content) {
		t.Errorf("taken sums = %+v", taken.Sums)
	}
	if _, err := b.Stat("data.xml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("taken file still visible: %v", err)
	}
	if b.Used() != 0 {
		t.Errorf("used = %d after take, want 0", b.Used())
	}
	if err := b.Restore(taken); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Sums("data.xml"); got != wantSums(content) {
		t.Errorf("restored file differs: %+v", got)
	}
}

func TestCrashLeftoversAreRemovedAtOpen(t *testing.T) {
	ib, b := openBox(t, Limits{})
	u, _ := b.Create("data.xml")
	u.WriteAt([]byte("half"), 0)
	// No Close: the process died. A new inbox over the same directory
	// drops the temporary.
	u.f.Close()
	ib2, err := Open(filepath.Dir(b.dir))
	if err != nil {
		t.Fatal(err)
	}
	defer ib2.Close()
	b2, err := ib2.Box("acme", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(b2.dir)
	if len(entries) != 0 || b2.Used() != 0 {
		t.Errorf("after restart: %d entries, used %d; want none", len(entries), b2.Used())
	}
	_ = ib
}

func put(t *testing.T, b *Box, name string, data []byte) {
	t.Helper()
	u, err := b.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
}

func mustJSON(t *testing.T, v sidecar) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Processes sharing the directory (a cluster's nodes) keep each other's
// uploads in progress: another process opening the box removes only the
// uploads left untouched past StaleUpload, and the live one publishes.
// A single server removes every leftover, as after its own crash.
func TestSharedInboxKeepsOthersUploads(t *testing.T) {
	dir := t.TempDir()
	node := func(stale time.Duration) *Inbox {
		ib, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		ib.StaleUpload = stale
		t.Cleanup(func() { ib.Close() })
		return ib
	}
	a := node(time.Hour)
	boxA, err := a.Box("acme", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	live, err := boxA.Create("live.xml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := live.WriteAt([]byte("<users>"), 0); err != nil {
		t.Fatal(err)
	}
	dead, err := boxA.Create("dead.xml")
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "acme", dead.temp), old, old); err != nil {
		t.Fatal(err)
	}

	if _, err := node(time.Hour).Box("acme", Limits{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "acme", dead.temp)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an upload untouched for 2 hours was kept: %v", err)
	}
	if _, err := live.WriteAt([]byte("</users>"), 7); err != nil {
		t.Fatal(err)
	}
	if err := live.Close(); err != nil {
		t.Fatalf("the live upload, after another node opened the box: %v", err)
	}
	if sums, err := boxA.Sums("live.xml"); err != nil || sums != wantSums([]byte("<users></users>")) {
		t.Errorf("published: %+v, %v", sums, err)
	}

	// A single server's start removes every leftover.
	left, err := boxA.Create("left.xml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := node(0).Box("acme", Limits{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "acme", left.temp)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a single server kept a leftover upload: %v", err)
	}
}
