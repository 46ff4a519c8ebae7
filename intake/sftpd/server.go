// Package sftpd is the SFTP server partners deliver flat files to. Each
// partner is confined to its own inbox box (an os.Root); uploads are
// published atomically and hashed as they arrive (package inbox).
package sftpd

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/flatfiler/flatfiler/intake/inbox"
	"github.com/flatfiler/flatfiler/intake/partner"
)

// Options configure the server. Zero values take the defaults noted.
type Options struct {
	HostKeyDir  string        // required: where host keys are kept
	IdleTimeout time.Duration // default 10m; a transfer in progress is activity
	// Limits apply to partners that set none of their own.
	Limits inbox.Limits
	// MaxAuthTries per connection; default 6, as OpenSSH.
	MaxAuthTries int
	// Failed logins from one address as one user name (see Ban): each
	// waits FailureDelay times the number of recent failures (at most 5 s);
	// BanAfter failures within BanWindow ban that address and name for
	// BanFor. Defaults 250ms, 10, 10m, 15m.
	FailureDelay time.Duration
	BanAfter     int
	BanWindow    time.Duration
	BanFor       time.Duration
	// BanFile keeps the bans across restarts (see BanFile); empty: in
	// memory only.
	BanFile string
	Logger  *slog.Logger
	Metrics *Metrics
}

// Server serves SFTP to partners.
type Server struct {
	opts     Options
	partners *partner.Registry
	inbox    *inbox.Inbox
	config   *ssh.ServerConfig
	signers  []ssh.Signer
	bans     *banList
	log      *slog.Logger
	metrics  *Metrics

	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	shutdown bool
}

// permissions extension carrying the authenticated partner's ID.
const partnerExt = "flatfiler-partner"

// New creates a server; host keys are loaded or generated.
func New(partners *partner.Registry, ib *inbox.Inbox, opts Options) (*Server, error) {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 10 * time.Minute
	}
	if opts.MaxAuthTries <= 0 {
		opts.MaxAuthTries = 6
	}
	if opts.FailureDelay <= 0 {
		opts.FailureDelay = 250 * time.Millisecond
	}
	if opts.BanAfter <= 0 {
		opts.BanAfter = 10
	}
	if opts.BanWindow <= 0 {
		opts.BanWindow = 10 * time.Minute
	}
	if opts.BanFor <= 0 {
		opts.BanFor = 15 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	signers, err := hostKeys(opts.HostKeyDir)
	if err != nil {
		return nil, err
	}
	bans, err := newBanList(opts.BanFile, opts.BanAfter, opts.BanWindow, opts.BanFor)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts: opts, partners: partners, inbox: ib, signers: signers, bans: bans,
		log: opts.Logger, metrics: opts.Metrics, conns: map[net.Conn]struct{}{},
	}
	cfg := &ssh.ServerConfig{
		MaxAuthTries:      opts.MaxAuthTries,
		PasswordCallback:  s.checkPassword,
		PublicKeyCallback: s.checkKey,
		ServerVersion:     "SSH-2.0-flatfiler",
	}
	// AES only: CPUs accelerate it, while x/crypto's chacha20-poly1305 has
	// no assembly and doubles the server's CPU per byte.
	cfg.Ciphers = []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR}
	for _, signer := range signers {
		cfg.AddHostKey(signer)
	}
	s.config = cfg
	return s, nil
}

// Fingerprints are the host keys' SHA-256 fingerprints, for partners to
// check on first connection.
func (s *Server) Fingerprints() []string {
	var out []string
	for _, k := range s.signers {
		out = append(out, k.PublicKey().Type()+" "+ssh.FingerprintSHA256(k.PublicKey()))
	}
	return out
}

func remoteIP(addr net.Addr) string {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
}

func (s *Server) checkPassword(meta ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
	ip := remoteIP(meta.RemoteAddr())
	p, ok := s.partners.Get(meta.User())
	if s.bans.banned(ip, meta.User(), ok) {
		s.metrics.Refused.Inc()
		return nil, errBanned
	}
	if !ok {
		// Spend a bcrypt's time on unknown users too, so the answer's
		// timing does not tell which user names exist.
		p = unknownUser()
	}
	if p.CheckPassword(string(password)) && ok {
		return &ssh.Permissions{Extensions: map[string]string{partnerExt: p.ID}}, nil
	}
	s.failed(ip, meta.User(), ok, "password")
	return nil, errors.New("authentication failed")
}

func (s *Server) checkKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	ip := remoteIP(meta.RemoteAddr())
	p, ok := s.partners.Get(meta.User())
	if s.bans.banned(ip, meta.User(), ok) {
		s.metrics.Refused.Inc()
		return nil, errBanned
	}
	if ok && p.HasKey(key) {
		return &ssh.Permissions{Extensions: map[string]string{partnerExt: p.ID}}, nil
	}
	// Clients offer every key they hold before a password; an unknown key is
	// not a guess, so it neither counts toward a ban nor waits.
	s.metrics.AuthFailures.WithLabelValues("publickey").Inc()
	return nil, errors.New("unknown public key")
}

var errBanned = errors.New("too many failed logins from this address as this user; try later")

// unknownUser has the bcrypt of a password nobody knows, at the cost
// partner passwords use.
var unknownUser = sync.OnceValue(func() *partner.Partner {
	h, _ := bcrypt.GenerateFromPassword([]byte("no such partner"), bcrypt.DefaultCost)
	return &partner.Partner{SFTPPasswordBcrypt: string(h)}
})

// failed records a failed password and makes the guesser wait longer each time.
func (s *Server) failed(ip, user string, known bool, method string) {
	s.metrics.AuthFailures.WithLabelValues(method).Inc()
	recent, ban, err := s.bans.fail(ip, user, known)
	if err != nil {
		s.log.Error("sftp ban not saved (in force until a restart)", "remote", ip, "user", user, "err", err)
	}
	if ban != nil {
		s.metrics.Bans.Inc()
		scope := "user " + user
		if ban.User == "" {
			scope = "user names that are no partner's"
		}
		s.log.Warn("sftp login banned", "remote", ip, "user", user, "for", scope, "failures", recent, "until", ban.Until,
			"lift", "flatfiler ban remove "+ip)
	} else {
		s.log.Info("sftp login failed", "remote", ip, "user", user, "method", method, "failures", recent)
	}
	time.Sleep(min(time.Duration(recent)*s.opts.FailureDelay, 5*time.Second))
}

// Serve accepts connections on ln until ctx ends or Shutdown is called.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			down := s.shutdown
			s.mu.Unlock()
			if ctx.Err() != nil || down || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return err
		}
		s.mu.Lock()
		if s.shutdown {
			s.mu.Unlock()
			conn.Close()
			continue
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, conn)
				s.mu.Unlock()
			}()
			s.handle(conn)
		}()
	}
}

// Shutdown stops accepting sessions and waits for open ones to end until
// ctx is done; then it closes them, and their open uploads are discarded,
// never published.
func (s *Server) Shutdown(ctx context.Context) {
	s.mu.Lock()
	s.shutdown = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	<-done
}

// session is one authenticated connection.
type session struct {
	partner  string
	remote   string
	last     atomic.Int64 // unix nanos of the last request
	received atomic.Int64
	sent     atomic.Int64
	uploads  atomic.Int64
}

func (ss *session) touch() { ss.last.Store(time.Now().UnixNano()) }

func (s *Server) handle(conn net.Conn) {
	// A client that never finishes the handshake must not hold a slot.
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	sconn, chans, reqs, err := ssh.NewServerConn(conn, s.config)
	if err != nil {
		conn.Close()
		s.log.Debug("sftp handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
		return
	}
	_ = conn.SetDeadline(time.Time{})
	defer sconn.Close()
	ss := &session{partner: sconn.Permissions.Extensions[partnerExt], remote: conn.RemoteAddr().String()}
	ss.touch()
	started := time.Now()
	s.metrics.Sessions.Inc()
	s.metrics.Active.Inc()
	defer s.metrics.Active.Dec()
	go ssh.DiscardRequests(reqs)

	idle := make(chan struct{})
	go s.watchIdle(sconn, ss, idle)
	defer close(idle)

	var wg sync.WaitGroup
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveChannel(ss, ch, chReqs)
		}()
	}
	wg.Wait()
	s.log.Info("sftp session", "partner", ss.partner, "remote", ss.remote,
		"seconds", time.Since(started).Seconds(), "uploads", ss.uploads.Load(),
		"bytes_received", ss.received.Load(), "bytes_sent", ss.sent.Load())
}

// watchIdle closes a connection with no request for IdleTimeout. Every
// SFTP request counts, each write of a transfer included.
func (s *Server) watchIdle(conn ssh.Conn, ss *session, done <-chan struct{}) {
	tick := time.NewTicker(max(s.opts.IdleTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			if time.Since(time.Unix(0, ss.last.Load())) > s.opts.IdleTimeout {
				s.log.Info("sftp session idle, closing", "partner", ss.partner, "remote", ss.remote, "idle_timeout", s.opts.IdleTimeout)
				conn.Close()
				return
			}
		}
	}
}

func (s *Server) serveChannel(ss *session, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		ok := req.Type == "subsystem" && len(req.Payload) >= 4 && string(req.Payload[4:]) == "sftp"
		if req.WantReply {
			_ = req.Reply(ok, nil)
		}
		if !ok {
			continue
		}
		p, found := s.partners.Get(ss.partner)
		if !found {
			return
		}
		lim := s.opts.Limits
		if p.MaxFileSize > 0 {
			lim.MaxFileSize = p.MaxFileSize
		}
		if p.QuotaBytes > 0 {
			lim.Quota = p.QuotaBytes
		}
		box, err := s.inbox.Box(p.ID, lim)
		if err != nil {
			s.log.Error("sftp inbox", "partner", p.ID, "err", err)
			return
		}
		h := &handlers{box: box, ss: ss, server: s}
		rs := sftp.NewRequestServer(ch, sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h},
			sftp.WithRSAllocator())
		if err := rs.Serve(); err != nil && !errors.Is(err, io.EOF) {
			s.log.Debug("sftp serve ended", "partner", ss.partner, "err", err)
		}
		rs.Close()
		return
	}
}
