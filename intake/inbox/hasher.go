package inbox

import (
	"crypto/md5"
	"crypto/sha256"
	"hash"
	"sync"
	"sync/atomic"
)

// hasher computes an upload's MD5 and SHA-256 on two goroutines of their
// own, fed in file order. Hashing costs about 2.2 CPU-seconds a GiB (MD5
// 1.5, SHA-256 0.7 on this machine's SHA-NI): done in the write path,
// under the upload's lock, it held every write of the transfer behind it,
// and OpenSSH's sftp-server, which hashes nothing, uploaded a third faster.
type hasher struct {
	md5, sha256 hash.Hash
	feeds       [2]chan *hashChunk
	wg          sync.WaitGroup
	stopped     bool
}

// hashChunk is a copy of written bytes, shared by the two hashes: the SFTP
// server reuses its buffer once the write returns.
type hashChunk struct {
	b    []byte
	refs atomic.Int32
}

var hashChunks = sync.Pool{New: func() any { return &hashChunk{} }}

func (c *hashChunk) release() {
	if c.refs.Add(-1) == 0 {
		hashChunks.Put(c)
	}
}

// hashQueue bounds the bytes waiting for each hash: at OpenSSH's 32 KiB
// writes, 2 MiB; a hash that falls behind slows the writes down.
const hashQueue = 64

func newHasher() *hasher {
	s := &hasher{md5: md5.New(), sha256: sha256.New()}
	for i, h := range []hash.Hash{s.md5, s.sha256} {
		feed := make(chan *hashChunk, hashQueue)
		s.feeds[i] = feed
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for c := range feed {
				h.Write(c.b)
				c.release()
			}
		}()
	}
	return s
}

// write hashes p, the bytes after those written before.
func (s *hasher) write(p []byte) {
	c := hashChunks.Get().(*hashChunk)
	c.b = append(c.b[:0], p...)
	c.refs.Store(int32(len(s.feeds)))
	for _, feed := range s.feeds {
		feed <- c
	}
}

// stop waits for the hashes to take what was written; md5 and sha256 are
// then the caller's. It may be called more than once.
func (s *hasher) stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	for _, feed := range s.feeds {
		close(feed)
	}
	s.wg.Wait()
}
