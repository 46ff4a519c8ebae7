package sftpd

import (
	"strings"
	"testing"

	"github.com/flatfiler/flatfiler/intake/inbox"
)

// Any path a client sends: what is let through is one plain name in the
// partner's flat folder, the one the path names.
func FuzzFileName(f *testing.F) {
	for _, seed := range []string{"/users.xml", "/a/../b.xml", "/../etc/passwd", "/.hidden", "/dir/file.xml", "/", "",
		`/..\users.xml`, "/name.filepart", "/" + strings.Repeat("x", 300), "/\x00.xml", "/users.xml/"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, path string) {
		name, err := fileName(path)
		if err != nil {
			return
		}
		if path != "/"+name || name == "" || strings.ContainsAny(name, "/\\\x00") || name == "." || name == ".." ||
			strings.HasPrefix(name, ".") || !inbox.ValidName(name) {
			t.Fatalf("path %q let through as name %q", path, name)
		}
	})
}
