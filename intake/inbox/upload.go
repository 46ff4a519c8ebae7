package inbox

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// maxPending caps the out-of-order bytes held for hashing. SFTP clients
// keep a bounded window of writes in flight (OpenSSH: 64 x 32 KiB), so this
// is only reached by odd write patterns; past it the hash catches up by
// reading the file back at close.
const maxPending = 8 << 20

// Upload is a file being written. Nothing is visible under its name until
// Close publishes it; Abort (or TransferError) discards it.
type Upload struct {
	box  *Box
	name string
	temp string
	f    *os.File

	mu      sync.Mutex
	size    int64 // bytes reserved against the quota: the file's extent
	hashed  int64 // the hashes cover [0, hashed)
	hasher  *hasher
	pending map[int64][]byte // written beyond hashed, copied: the caller reuses its buffer
	held    int64            // bytes in pending
	behind  bool             // pending was dropped: catch up from the file at close
	rewound bool             // hashed bytes were overwritten: rehash everything at close
	failed  error            // the transfer broke; Close discards
	closed  bool
}

// Create starts an upload that will be published as name.
func (b *Box) Create(name string) (*Upload, error) {
	if !ValidName(name) {
		return nil, ErrBadName
	}
	if info, err := b.root.Lstat(name); err == nil && !info.Mode().IsRegular() {
		return nil, ErrNotFile
	}
	rnd := make([]byte, 8)
	_, _ = rand.Read(rnd)
	temp := tempPrefix + hex.EncodeToString(rnd)
	f, err := b.root.OpenFile(temp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &Upload{
		box: b, name: name, temp: temp, f: f,
		hasher: newHasher(), pending: map[int64][]byte{},
	}, nil
}

// Name is the name the upload will be published as.
func (u *Upload) Name() string { return u.name }

// WriteAt writes p at off. SFTP servers run several writes of one handle at
// once and they may land out of order; the hashes follow the contiguous
// prefix behind them.
func (u *Upload) WriteAt(p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	end := off + int64(len(p))
	if err := u.grow(end); err != nil {
		return 0, err
	}
	n, err := u.f.WriteAt(p, off)
	if err != nil {
		return n, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		// Close came between grow and now: it has taken the hashes.
		return n, fmt.Errorf("%s: upload already ended", u.name)
	}
	u.track(p, off, end)
	return n, nil
}

// grow reserves quota for a write ending at end and enforces the size limit.
func (u *Upload) grow(end int64) error {
	lim := u.box.limits.Load()
	if lim.MaxFileSize > 0 && end > lim.MaxFileSize {
		return fmt.Errorf("%s: %w of %d bytes", u.name, ErrTooLarge, lim.MaxFileSize)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.failed != nil {
		// The client sees why, whichever of its writes in flight it reads.
		return fmt.Errorf("%s: upload already failed: %w", u.name, u.failed)
	}
	if u.closed {
		return fmt.Errorf("%s: upload already ended", u.name)
	}
	if end <= u.size {
		return nil
	}
	if err := u.box.reserve(end - u.size); err != nil {
		return fmt.Errorf("%s: %w", u.name, err)
	}
	u.size = end
	return nil
}

// track feeds the hashes with what just reached the file. Called with mu held.
func (u *Upload) track(p []byte, off, end int64) {
	switch {
	case u.rewound:
	case off < u.hashed:
		// A rewrite of hashed bytes: the running hashes are wrong now.
		u.rewound, u.pending, u.held = true, nil, 0
	case off == u.hashed:
		u.hash(p)
		for !u.behind {
			next, ok := u.pending[u.hashed]
			if !ok {
				break
			}
			delete(u.pending, u.hashed)
			u.held -= int64(len(next))
			u.hash(next)
		}
	case u.behind:
	default:
		if u.overlapsPending(off, end) || u.held+int64(len(p)) > u.box.pendingCap {
			u.behind, u.pending, u.held = true, nil, 0
			return
		}
		u.pending[off] = append([]byte(nil), p...)
		u.held += int64(len(p))
	}
}

func (u *Upload) hash(p []byte) {
	u.hasher.write(p)
	u.hashed += int64(len(p))
}

func (u *Upload) overlapsPending(off, end int64) bool {
	for o, b := range u.pending {
		if off < o+int64(len(b)) && o < end {
			return true
		}
	}
	return false
}

// TransferError is called by the SFTP server when the connection broke with
// the file still open: the upload must not be published.
func (u *Upload) TransferError(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.failed == nil {
		u.failed = err
	}
}

// ErrAborted is returned by Close for an upload whose transfer broke.
var ErrAborted = errors.New("upload interrupted; the file was not published")

// Close publishes the upload under its name, replacing any file of that
// name, unless the transfer broke; then it removes what was written.
func (u *Upload) Close() error {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil
	}
	u.closed = true
	failed := u.failed
	u.mu.Unlock()
	if failed != nil {
		u.discard()
		if errors.Is(failed, ErrAborted) {
			return fmt.Errorf("%s: %w", u.name, failed)
		}
		return fmt.Errorf("%s: %w: %v", u.name, ErrAborted, failed)
	}
	sums, err := u.finishSums()
	if err != nil {
		u.discard()
		return fmt.Errorf("%s: %w", u.name, err)
	}
	if err := u.f.Close(); err != nil {
		u.discard()
		return fmt.Errorf("%s: %w", u.name, err)
	}
	return u.publish(sums)
}

// Abort discards the upload.
func (u *Upload) Abort() {
	u.TransferError(ErrAborted)
	_ = u.Close()
}

func (u *Upload) discard() {
	u.stopHashing()
	u.f.Close()
	_ = u.box.root.Remove(u.temp)
	u.box.used.Add(-u.size)
}

// stopHashing waits for the hashes of what track fed them. Under mu, so no
// write in flight feeds them after: Close has set closed by then.
func (u *Upload) stopHashing() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.hasher.stop()
}

// finishSums completes the hashes, reading back from the file what could
// not be hashed on arrival.
func (u *Upload) finishSums() (Sums, error) {
	u.stopHashing()
	info, err := u.f.Stat()
	if err != nil {
		return Sums{}, err
	}
	md5, sha256 := u.hasher.md5, u.hasher.sha256
	if u.rewound {
		md5.Reset()
		sha256.Reset()
		u.hashed = 0
	}
	if u.hashed < info.Size() {
		rest := io.NewSectionReader(u.f, u.hashed, info.Size()-u.hashed)
		if _, err := io.Copy(io.MultiWriter(md5, sha256), rest); err != nil {
			return Sums{}, err
		}
		u.hashed = info.Size()
	}
	return Sums{Size: info.Size(), MD5: hex.EncodeToString(md5.Sum(nil)), SHA256: hex.EncodeToString(sha256.Sum(nil))}, nil
}

// publish writes the sidecar, then renames the temporary into place.
func (u *Upload) publish(sums Sums) error {
	b := u.box
	b.mu.Lock()
	defer b.mu.Unlock()
	info, err := b.root.Lstat(u.temp)
	if err != nil {
		u.discard()
		return err
	}
	// The sidecar goes first: a crash between the two leaves a sidecar
	// that describes no file (its identity will not match), never a file
	// with a wrong sidecar.
	if err := b.writeSidecar(u.name, sums, info); err != nil {
		u.discard()
		return err
	}
	replaced, _ := b.root.Lstat(u.name)
	if err := b.root.Rename(u.temp, u.name); err != nil {
		u.discard()
		return err
	}
	if replaced != nil {
		b.used.Add(-replaced.Size())
	}
	// The reservation covered the extent written; the file may be shorter
	// only if the client wrote nothing past some point, never longer.
	b.used.Add(info.Size() - u.size)
	return nil
}
