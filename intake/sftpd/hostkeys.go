package sftpd

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/flatfiler/flatfiler/internal/durable"
)

// hostKeys loads the server's host keys from dir, generating those missing.
// They are generated once: a key that changed would make every partner's
// client refuse to connect.
func hostKeys(dir string) ([]ssh.Signer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("host keys: %w", err)
	}
	kinds := []struct {
		file string
		gen  func() (crypto.Signer, error)
	}{
		{"ssh_host_ed25519_key", func() (crypto.Signer, error) {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			return k, err
		}},
		// RSA for clients that predate ed25519; 3072 bits, NIST's floor past 2030.
		{"ssh_host_rsa_key", func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 3072) }},
	}
	var signers []ssh.Signer
	for _, k := range kinds {
		path := filepath.Join(dir, k.file)
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			data, err = generateHostKey(path, k.gen)
		}
		if err != nil {
			return nil, fmt.Errorf("host key %s: %w", path, err)
		}
		signer, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("host key %s: %w", path, err)
		}
		signers = append(signers, signer)
	}
	return signers, nil
}

func generateHostKey(path string, gen func() (crypto.Signer, error)) ([]byte, error) {
	key, err := gen()
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		return nil, err
	}
	data := pem.EncodeToMemory(block)
	// Nodes of a cluster may start at once on one empty directory: the
	// key is written whole under a name of its own, then linked into
	// place, which only one of them can do. The others read the winner's.
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := os.Link(f.Name(), path); errors.Is(err, os.ErrExist) {
		return os.ReadFile(path)
	} else if err != nil {
		return nil, err
	}
	if err := durable.SyncDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if pub, err := ssh.NewPublicKey(key.Public()); err == nil {
		_ = os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(pub), 0o644)
	}
	return data, nil
}
