package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pkg/sftp"

	"github.com/flatfiler/flatfiler/intake/partner"
	"github.com/flatfiler/flatfiler/internal/failpoint"
	"github.com/flatfiler/flatfiler/internal/failpoint/smalldisk"
)

// openSSHBatch runs OpenSSH's sftp with a batch of commands as the
// partner, password from an askpass program as scripts/deliver.sh does.
func openSSHBatch(t *testing.T, ts *testServer, creds partner.Credentials, batch string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	askpass := filepath.Join(dir, "askpass")
	os.WriteFile(askpass, []byte("#!/bin/sh\nprintf '%s\\n' \"$PW\"\n"), 0o700)
	os.WriteFile(filepath.Join(dir, "batch"), []byte(batch), 0o600)
	_, port, _ := strings.Cut(ts.sftpLn.Addr().String(), ":")
	cmd := exec.Command("sftp", "-P", port, "-o", "UserKnownHostsFile="+filepath.Join(dir, "known_hosts"),
		"-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=no", "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
		"-b", filepath.Join(dir, "batch"), creds.SFTPUser+"@127.0.0.1")
	cmd.Env = append(os.Environ(), "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0", "PW="+creds.SFTPPassword)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestSFTPRefusalsSayWhy: a refused upload's status carries the reason (a
// name rule, the size limit, the quota, a full disk), never a server
// path, and the status code fits it; OpenSSH's sftp, which prints only the
// code, can see the quota left with df.
func TestSFTPRefusalsSayWhy(t *testing.T) {
	dir := smalldisk.Mount(t, 64<<20)
	ts := startTestServer(t, dir)
	small, err := ts.partners.Add("smallbank", partner.NewOptions{MaxFileSize: 2000, QuotaBytes: 3000})
	if err != nil {
		t.Fatal(err)
	}
	c := ts.mustSFTP(small)
	put := func(name string, size int) error {
		f, err := c.Create(name)
		if err != nil {
			return err
		}
		if _, err := f.ReadFrom(bytes.NewReader(make([]byte, size))); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	if err := put("first.xml", 1500); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		file string
		size int
		code uint32 // SSH_FX_*
		want string
	}{
		{"size limit", "big.xml", 2500, 4, "exceeds the maximum file size of 2000 bytes"},
		{"quota", "second.xml", 1800, 4, "disk quota exceeded: 1500 of 3000 bytes used"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := put(tt.file, tt.size)
			var se *sftp.StatusError
			if !errors.As(err, &se) || se.Code != tt.code || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("upload refused with %v, want status %d saying %q", err, tt.code, tt.want)
			}
		})
	}
	// pkg/sftp's client turns a permission-denied status into os.ErrPermission
	// and drops its message; OpenSSH's sftp prints "Permission denied".
	if err := put("bad name!.xml", 10); !errors.Is(err, os.ErrPermission) {
		t.Errorf("a name the rule refuses: %v, want permission denied", err)
	}
	t.Run("disk full", func(t *testing.T) {
		c := ts.mustSFTP(ts.demo)
		ballast := filepath.Join(dir, "ballast")
		if err := failpoint.Fill(ballast); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(ballast)
		f, err := c.Create("users.xml")
		if err == nil {
			_, err = f.ReadFrom(bytes.NewReader(make([]byte, 200<<10)))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err == nil || !strings.Contains(err.Error(), "the server's disk is full") || strings.Contains(err.Error(), dir) {
			t.Errorf("upload on a full disk: %v", err)
		}
	})
	t.Run("df in OpenSSH's sftp", func(t *testing.T) {
		out, err := openSSHBatch(t, ts, small, "df\n")
		// df prints sizes in KiB: the quota is 3000 bytes, 1500 used.
		t.Logf("%s", out)
		if err != nil || !regexp.MustCompile(`\n\s+2\s+1\s+1\s`).MatchString(out) {
			t.Errorf("df: %v\n%s", err, out)
		}
	})
}
