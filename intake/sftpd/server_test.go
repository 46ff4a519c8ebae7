package sftpd

import (
	"context"
	"crypto/rsa"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/flatfiler/flatfiler/intake/inbox"
	"github.com/flatfiler/flatfiler/intake/partner"
)

func serve(t *testing.T, dir string) (*Server, string, partner.Credentials) {
	t.Helper()
	reg, err := partner.Open(filepath.Join(dir, "partners"))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := reg.Add("acme", partner.NewOptions{})
	if err != nil && len(reg.IDs()) == 0 {
		t.Fatal(err)
	}
	ib, _ := inbox.Open(filepath.Join(dir, "sftp"))
	s, err := New(reg, ib, Options{HostKeyDir: filepath.Join(dir, "keys"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done; s.Shutdown(context.Background()); ib.Close() })
	return s, ln.Addr().String(), creds
}

func TestOnlyAESCiphers(t *testing.T) {
	_, addr, creds := serve(t, t.TempDir())
	dial := func(cipher string) error {
		cfg := &ssh.ClientConfig{User: creds.SFTPUser, Auth: []ssh.AuthMethod{ssh.Password(creds.SFTPPassword)},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second}
		cfg.Ciphers = []string{cipher}
		conn, err := ssh.Dial("tcp", addr, cfg)
		if err != nil {
			return err
		}
		defer conn.Close()
		c, err := sftp.NewClient(conn)
		if err != nil {
			return err
		}
		return c.Close()
	}
	for _, ok := range []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherAES128CTR, ssh.CipherAES256CTR} {
		if err := dial(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	if err := dial(ssh.CipherChaCha20Poly1305); err == nil {
		t.Error("chacha20-poly1305 accepted")
	}
}

func TestHostKeysAreGeneratedOnce(t *testing.T) {
	dir := t.TempDir()
	first, _, _ := serve(t, dir)
	again, _, _ := serve(t, dir)
	if !slices.Equal(first.Fingerprints(), again.Fingerprints()) || len(first.Fingerprints()) != 2 {
		t.Errorf("host keys changed across starts: %v vs %v", first.Fingerprints(), again.Fingerprints())
	}
	for _, name := range []string{"ssh_host_ed25519_key", "ssh_host_rsa_key"} {
		info, err := os.Stat(filepath.Join(dir, "keys", name))
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", name, info.Mode(), err)
		}
	}
	signer, err := ssh.ParsePrivateKey(must(os.ReadFile(filepath.Join(dir, "keys", "ssh_host_rsa_key"))))
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, ok := signer.PublicKey().(ssh.CryptoPublicKey).CryptoPublicKey().(*rsa.PublicKey)
	if !ok || rsaKey.N.BitLen() != 3072 {
		t.Errorf("RSA host key: %T, want 3072 bits", signer.PublicKey())
	}
}

// Nodes of a cluster starting at once on one empty directory agree on one
// set of keys, and none fails for the others' files.
func TestHostKeysOfNodesStartingAtOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	const nodes = 4
	fingerprints := make([][]string, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() {
			signers, err := hostKeys(dir)
			errs[i] = err
			for _, s := range signers {
				fingerprints[i] = append(fingerprints[i], ssh.FingerprintSHA256(s.PublicKey()))
			}
		})
	}
	wg.Wait()
	for i := range nodes {
		if errs[i] != nil || !slices.Equal(fingerprints[i], fingerprints[0]) || len(fingerprints[i]) != 2 {
			t.Errorf("node %d: %v %v; node 0 has %v", i, errs[i], fingerprints[i], fingerprints[0])
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
