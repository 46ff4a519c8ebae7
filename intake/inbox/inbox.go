// Package inbox is where partners' uploads land: one flat directory per
// partner, reached only through os.Root, written atomically and hashed
// while the bytes arrive.
//
// A file becomes visible under its name only when its upload closes
// cleanly; until then it lives under a hidden temporary name. Next to each
// published file a hidden sidecar records its MD5 and SHA-256 and the
// identity (inode, size, mtime) of the bytes they were computed on, so a
// notification need not re-read gigabytes, and a file changed by other means
// is never trusted on a stale hash.
package inbox

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Errors a client may see. The SFTP layer maps them to status codes.
var (
	ErrBadName  = errors.New("file name not allowed: use letters, digits, '.', '_' or '-', not starting with '.', at most 255 bytes, no directories")
	ErrTooLarge = errors.New("file exceeds the maximum file size")
	ErrQuota    = errors.New("disk quota exceeded")
	ErrNotFile  = errors.New("not a regular file")
)

// namePattern is the filename allowlist. Names starting with '.' are
// reserved for temporaries and sidecars, so no client can reach them.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)

// ValidName reports whether name may be uploaded and notified.
func ValidName(name string) bool {
	return namePattern.MatchString(name) && !strings.Contains(name, "..")
}

// Limits bound what one partner may store.
type Limits struct {
	MaxFileSize int64 // bytes per file; 0: unlimited
	Quota       int64 // bytes over all the partner's files, uploads in flight included; 0: unlimited
}

// Inbox holds every partner's box under one directory.
type Inbox struct {
	dir string
	// StaleUpload, set when several processes share the directory (a
	// cluster's nodes), keeps the others' uploads in progress: a box's
	// first use removes only the temporary files of uploads untouched for
	// this long (an upload writes as it goes, and SFTP closes a session
	// idle past its timeout), where a single server removes them all.
	StaleUpload time.Duration

	mu    sync.Mutex
	boxes map[string]*Box
}

// Open opens the inbox rooted at dir, creating it if needed.
func Open(dir string) (*Inbox, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("inbox: %w", err)
	}
	return &Inbox{dir: dir, boxes: map[string]*Box{}}, nil
}

// Box returns the partner's box, opening it on first use. Sessions of one
// partner share it, so the quota holds across them.
func (ib *Inbox) Box(partner string, lim Limits) (*Box, error) {
	ib.mu.Lock()
	defer ib.mu.Unlock()
	if b, ok := ib.boxes[partner]; ok {
		b.limits.Store(&lim)
		return b, nil
	}
	if !ValidName(partner) {
		return nil, fmt.Errorf("inbox: partner %q: %w", partner, ErrBadName)
	}
	dir := filepath.Join(ib.dir, partner)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("inbox: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("inbox: %w", err)
	}
	b := &Box{partner: partner, dir: dir, root: root, pendingCap: maxPending}
	b.limits.Store(&lim)
	if err := b.scan(ib.StaleUpload); err != nil {
		root.Close()
		return nil, err
	}
	ib.boxes[partner] = b
	return b, nil
}

// Close releases every box.
func (ib *Inbox) Close() error {
	ib.mu.Lock()
	defer ib.mu.Unlock()
	for id, b := range ib.boxes {
		b.root.Close()
		delete(ib.boxes, id)
	}
	return nil
}

// Box is one partner's directory.
type Box struct {
	partner string
	dir     string
	root    *os.Root
	limits  atomic.Pointer[Limits]
	used    atomic.Int64 // bytes on disk, temporaries included
	// pendingCap is maxPending but for tests, which reach it with less data.
	pendingCap int64

	// mu orders publishing, renames, removals and takes, so a name never
	// points at bytes its sidecar does not describe.
	mu sync.Mutex
}

// Partner is the box's owner.
func (b *Box) Partner() string { return b.partner }

// Used is the bytes the box holds, uploads in flight included.
func (b *Box) Used() int64 { return b.used.Load() }

// Space is what the partner may still upload: room under its quota, and
// no more than the disk has free; capacity is its quota (the disk's size
// without one).
func (b *Box) Space() (capacity, free int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(b.dir, &st); err != nil {
		return 0, 0, err
	}
	capacity, free = int64(st.Blocks)*st.Bsize, int64(st.Bavail)*st.Bsize
	if quota := b.limits.Load().Quota; quota > 0 {
		capacity, free = quota, min(free, max(quota-b.used.Load(), 0))
	}
	return capacity, free, nil
}

// scan counts what is on disk and removes temporaries a crash left behind:
// an upload that never closed cleanly is never published.
func (b *Box) scan(staleUpload time.Duration) error {
	entries, err := fs.ReadDir(b.root.FS(), ".")
	if err != nil {
		return fmt.Errorf("inbox %s: %w", b.partner, err)
	}
	var used int64
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			if info, err := e.Info(); staleUpload == 0 || err == nil && time.Since(info.ModTime()) > staleUpload {
				_ = b.root.Remove(e.Name())
			}
			continue
		}
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			used += info.Size()
		}
	}
	b.used.Store(used)
	return nil
}

const (
	tempPrefix    = ".upload-"
	sidecarPrefix = ".sums-"
)

func sidecarName(name string) string { return sidecarPrefix + name + ".json" }

// Sums identify a file's content, as notifications name it.
type Sums struct {
	Size   int64  `json:"size"`
	MD5    string `json:"md5"`
	SHA256 string `json:"sha256"`
}

// sidecar is Sums plus the identity of the bytes they were computed on.
type sidecar struct {
	Sums
	Inode   uint64 `json:"inode"`
	MtimeNS int64  `json:"mtime_ns"`
}

func identity(info os.FileInfo) (inode uint64, mtime int64) {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		inode = st.Ino
	}
	return inode, info.ModTime().UnixNano()
}

func (s sidecar) matches(info os.FileInfo) bool {
	ino, mtime := identity(info)
	return s.Size == info.Size() && s.Inode == ino && s.MtimeNS == mtime
}

// Stat returns a published file's information.
func (b *Box) Stat(name string) (os.FileInfo, error) {
	if !ValidName(name) {
		return nil, ErrBadName
	}
	info, err := b.root.Lstat(name)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, ErrNotFile
	}
	return info, nil
}

// List returns the published files, hidden ones left out.
func (b *Box) List() ([]os.FileInfo, error) {
	entries, err := fs.ReadDir(b.root.FS(), ".")
	if err != nil {
		return nil, err
	}
	var out []os.FileInfo
	for _, e := range entries {
		if !ValidName(e.Name()) || !e.Type().IsRegular() {
			continue
		}
		if info, err := e.Info(); err == nil {
			out = append(out, info)
		}
	}
	return out, nil
}

// DirInfo describes the box itself, for a client's stat of "/".
func (b *Box) DirInfo() (os.FileInfo, error) { return b.root.Stat(".") }

// Open opens a published file for reading.
func (b *Box) Open(name string) (*os.File, error) {
	if _, err := b.Stat(name); err != nil {
		return nil, err
	}
	return b.root.Open(name)
}

// Remove deletes a published file.
func (b *Box) Remove(name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	info, err := b.Stat(name)
	if err != nil {
		return err
	}
	if err := b.root.Remove(name); err != nil {
		return err
	}
	_ = b.root.Remove(sidecarName(name))
	b.used.Add(-info.Size())
	return nil
}

// Rename renames a published file, replacing the target as POSIX rename
// does: clients that upload name.filepart and rename it rely on this.
func (b *Box) Rename(from, to string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.Stat(from); err != nil {
		return err
	}
	if !ValidName(to) {
		return ErrBadName
	}
	if from == to {
		return nil
	}
	replaced, err := b.root.Lstat(to)
	if err == nil && !replaced.Mode().IsRegular() {
		return ErrNotFile
	}
	if err := b.root.Rename(from, to); err != nil {
		return err
	}
	if replaced != nil {
		b.used.Add(-replaced.Size())
	}
	_ = b.root.Remove(sidecarName(to))
	_ = b.root.Rename(sidecarName(from), sidecarName(to))
	return nil
}

// Sums returns a published file's sums: from its sidecar when the sidecar
// describes the file as it is, otherwise by reading it.
func (b *Box) Sums(name string) (Sums, error) {
	info, err := b.Stat(name)
	if err != nil {
		return Sums{}, err
	}
	if sc, ok := b.readSidecar(name); ok && sc.matches(info) {
		return sc.Sums, nil
	}
	f, err := b.root.Open(name)
	if err != nil {
		return Sums{}, err
	}
	defer f.Close()
	sums, err := SumsOf(f)
	if err != nil {
		return Sums{}, err
	}
	// Keep what was read, so that Take, right after, does not read the
	// file a second time. Written only if the name still holds the bytes
	// just hashed; the sidecar is checked against the file in any case.
	b.mu.Lock()
	defer b.mu.Unlock()
	if current, err := b.root.Lstat(name); err == nil && sameFile(current, info) {
		b.writeSidecar(name, sums, info)
	}
	return sums, nil
}

func sameFile(a, b os.FileInfo) bool {
	inoA, mtimeA := identity(a)
	inoB, mtimeB := identity(b)
	return inoA == inoB && mtimeA == mtimeB && a.Size() == b.Size()
}

// writeSidecar records sums for the bytes info describes. Called with mu held.
func (b *Box) writeSidecar(name string, sums Sums, info os.FileInfo) error {
	sc := sidecar{Sums: sums}
	sc.Inode, sc.MtimeNS = identity(info)
	data, err := json.Marshal(sc)
	if err != nil {
		return err
	}
	return b.root.WriteFile(sidecarName(name), data, 0o600)
}

func (b *Box) readSidecar(name string) (sidecar, bool) {
	var sc sidecar
	data, err := b.root.ReadFile(sidecarName(name))
	if err != nil || json.Unmarshal(data, &sc) != nil {
		return sidecar{}, false
	}
	return sc, true
}

// SumsOf reads r to the end and returns its sums.
func SumsOf(r io.Reader) (Sums, error) {
	m, s := md5.New(), sha256.New()
	n, err := io.Copy(io.MultiWriter(m, s), r)
	if err != nil {
		return Sums{}, err
	}
	return Sums{Size: n, MD5: hex.EncodeToString(m.Sum(nil)), SHA256: hex.EncodeToString(s.Sum(nil))}, nil
}

// Taken is a file moved out of the box for processing.
type Taken struct {
	Name string
	Path string // where it is now
	Sums
}

// Take moves a published file to dst, outside the box, so that nothing the
// partner does afterwards changes it, and returns the sums of what was
// moved. dst must be on the same file system as the inbox.
func (b *Box) Take(name, dst string) (Taken, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	info, err := b.Stat(name)
	if err != nil {
		return Taken{}, err
	}
	sc, haveSidecar := b.readSidecar(name)
	// The name was checked against the allowlist and is a regular file,
	// not a symlink, inside a directory only this process creates; rename
	// does not follow a final symlink in any case.
	if err := os.Rename(filepath.Join(b.dir, name), dst); err != nil {
		return Taken{}, fmt.Errorf("take %s: %w", name, err)
	}
	_ = b.root.Remove(sidecarName(name))
	b.used.Add(-info.Size())
	moved, err := os.Lstat(dst)
	if err != nil {
		return Taken{}, err
	}
	t := Taken{Name: name, Path: dst}
	if haveSidecar && sc.matches(moved) {
		t.Sums = sc.Sums
		return t, nil
	}
	f, err := os.Open(dst)
	if err != nil {
		return Taken{}, err
	}
	defer f.Close()
	if t.Sums, err = SumsOf(f); err != nil {
		return Taken{}, err
	}
	return t, nil
}

// Restore puts a taken file back under its name, unless the partner has
// published a new file of that name meanwhile; then the taken one, older,
// is removed.
func (b *Box) Restore(t Taken) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.root.Lstat(t.Name); err == nil {
		return os.Remove(t.Path)
	}
	if err := os.Rename(t.Path, filepath.Join(b.dir, t.Name)); err != nil {
		return fmt.Errorf("restore %s: %w", t.Name, err)
	}
	if info, err := b.root.Lstat(t.Name); err == nil {
		b.used.Add(info.Size())
	}
	return nil
}

// reserve accounts for n more bytes on disk, or refuses past the quota.
func (b *Box) reserve(n int64) error {
	quota := b.limits.Load().Quota
	for {
		used := b.used.Load()
		if quota > 0 && used+n > quota {
			return fmt.Errorf("%w: %d of %d bytes used", ErrQuota, used, quota)
		}
		if b.used.CompareAndSwap(used, used+n) {
			return nil
		}
	}
}
