// Package pgtest starts a real PostgreSQL server for a test: Debian's
// postgresql binaries, a fresh cluster in a temporary directory, listening on
// a loopback port only, stopped by its PID when the test ends.
//
// PostgreSQL refuses to run as root; under root (CI, containers) the
// cluster belongs to the unprivileged user nobody instead.
package pgtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running PostgreSQL.
type Server struct {
	// URL connects as the superuser flatfiler to database postgres.
	URL  string
	Addr string
	dir  string
	cmd  *exec.Cmd
}

// Binaries finds initdb and postgres: on PATH, or where Debian's
// postgresql package puts them (not on PATH).
func Binaries() (initdb, postgres string, err error) {
	if i, err := exec.LookPath("initdb"); err == nil {
		if p, err := exec.LookPath("postgres"); err == nil {
			return i, p, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", "", errors.New("PostgreSQL's server is not installed (Debian: apt-get install postgresql; make test installs it)")
	}
	bin := filepath.Dir(matches[len(matches)-1]) // the newest major version
	return filepath.Join(bin, "initdb"), filepath.Join(bin, "postgres"), nil
}

// Start runs a new cluster for t and stops it at t's end.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// New runs a new cluster; Stop ends it. For benchmarks: tests use Start.
func New() (_ *Server, err error) {
	initdb, postgres, err := Binaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "flatfiler-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	cred, err := unprivileged()
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	init := exec.Command(initdb, "-D", data, "-U", "flatfiler", "--auth=trust", "-E", "UTF8", "--no-sync")
	init.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	init.Dir = dir
	if out, err := init.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.URL = fmt.Sprintf("postgres://flatfiler@%s/postgres?sslmode=disable", s.Addr)
	// fsync off: a test's cluster does not outlive a crash of the machine.
	s.cmd = exec.Command(postgres, "-D", data, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-k", dir,
		"-c", "fsync=off", "-c", "max_connections=200", "-c", "shared_buffers=32MB")
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	s.cmd.Dir = dir
	logs, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	// The server says when it accepts connections; its log is the signal.
	ready := make(chan error, 1)
	var seen strings.Builder
	go func() {
		sc := bufio.NewScanner(logs)
		for sc.Scan() {
			if seen.Len() < 8<<10 {
				seen.WriteString(sc.Text() + "\n")
			}
			if strings.Contains(sc.Text(), "database system is ready to accept connections") {
				ready <- nil
				_, _ = io.Copy(io.Discard, logs)
				return
			}
		}
		ready <- errors.New("postgres exited before it was ready")
	}()
	select {
	case err := <-ready:
		if err != nil {
			return nil, fmt.Errorf("%w:\n%s", err, seen.String())
		}
	case <-time.After(60 * time.Second):
		return nil, errors.New("postgres was not ready within 60s")
	}
	return s, nil
}

// Pause freezes the server and every backend (SIGSTOP): connections stay
// open and nothing answers, as when the database host hangs or the network
// to it is cut. Resume undoes it. Each backend leads a process group of its
// own, so they are found as the postmaster's children.
func (s *Server) Pause() error { return s.signalAll(syscall.SIGSTOP) }

// Resume lets a paused server run again.
func (s *Server) Resume() error { return s.signalAll(syscall.SIGCONT) }

func (s *Server) signalAll(sig syscall.Signal) error {
	if s.cmd == nil {
		return errors.New("pgtest: the server is stopped")
	}
	pid := s.cmd.Process.Pid
	if err := syscall.Kill(pid, sig); err != nil { // first: it forks no more
		return err
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, stat := range stats {
		b, err := os.ReadFile(stat)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so after ")".
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(stat)))
			_ = syscall.Kill(child, sig)
		}
	}
	return nil
}

// Stop ends the server (a fast shutdown) and removes its cluster.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.Resume()
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		s.cmd = nil
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// Database creates a database for one test and returns its URL.
func (s *Server) Database(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return strings.Replace(s.URL, "/postgres?", "/"+name+"?", 1), nil
}

// unprivileged is who runs PostgreSQL: nobody under root, else the caller.
func unprivileged() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses root: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
