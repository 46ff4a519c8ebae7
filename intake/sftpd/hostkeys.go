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
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
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
	if pub, err := ssh.NewPublicKey(key.Public()); err == nil {
		_ = os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(pub), 0o644)
	}
	return data, nil
}
