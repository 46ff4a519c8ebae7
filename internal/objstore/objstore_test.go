package objstore

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flatfiler/flatfiler/internal/objstore/s3test"
)

func TestPutAndExpire(t *testing.T) {
	t.Run("https", func(t *testing.T) { testPutAndExpire(t, s3test.Start(t, "files")) })
	t.Run("http", func(t *testing.T) { testPutAndExpire(t, s3test.StartHTTP(t, "files")) })
}

func testPutAndExpire(t *testing.T, fake *s3test.Server) {
	ctx := context.Background()
	s, err := Open(ctx, fake.Location)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Larger than a part: a multipart upload.
	big := bytes.Repeat([]byte("<user/>"), (partSize+partSize/2)/7)
	for name, data := range map[string][]byte{"old.xml": []byte("<users/>"), "big.xml": big} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, "fi1/2026-11-01/old.xml", filepath.Join(dir, "old.xml")); err != nil {
		t.Fatal(err)
	}
	fake.Clock.Advance(40 * 24 * time.Hour)
	if err := s.Put(ctx, "fi1/2026-12-11/big.xml", filepath.Join(dir, "big.xml")); err != nil {
		t.Fatal(err)
	}
	if size, ok, err := s.Size(ctx, "fi1/2026-12-11/big.xml"); err != nil || !ok || size != int64(len(big)) {
		t.Fatalf("big.xml stored: %d, %v, %v; want %d bytes", size, ok, err, len(big))
	}
	n, err := s.Expire(ctx, time.Now().Add(10*24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("expired %d, %v; want the old file only", n, err)
	}
	if _, ok, _ := s.Size(ctx, "fi1/2026-11-01/old.xml"); ok {
		t.Error("the old file is still there")
	}
	if _, ok, _ := s.Size(ctx, "fi1/2026-12-11/big.xml"); !ok {
		t.Error("the new file was expired")
	}
}

func TestOpenRefusesWhatCannotWork(t *testing.T) {
	location := s3test.Start(t, "files").Location
	ctx := context.Background()
	for _, tt := range []struct{ location, want string }{
		{strings.Replace(location, "s3://files/", "s3://nobucket/", 1), `no bucket "nobucket"`},
		{"s3://key:secret@files/x", "credentials go in AWS_ACCESS_KEY_ID"},
		{"/var/archive", "want s3://BUCKET/PREFIX"},
		{location + "&insecure=true", "ca is for TLS"},
	} {
		if _, err := Open(ctx, tt.location); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open(%q): %v; want %q", tt.location, err, tt.want)
		}
	}
}
