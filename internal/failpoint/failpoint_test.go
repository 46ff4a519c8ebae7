package failpoint

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		spec, err string
	}{
		{"", ""},
		{"load/staged=crash", ""},
		{"load/staged=crash@2; job/recorded=fill(/mnt/ballast)", ""},
		{"load/stagd=crash", "want POINT=ACTION"},
		{"load/staged", "want POINT=ACTION"},
		{"load/staged=explode", "unknown action"},
		{"load/staged=fill()", "unknown action"},
		{"load/staged=crash@0", "number from 1"},
	} {
		_, err := Parse(tt.spec, io.Discard)
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("Parse(%q) = %v, want %q", tt.spec, err, tt.err)
		}
	}
}

func TestHitCountsAndActs(t *testing.T) {
	var nothing *Set
	if err := nothing.Hit(LoadStaged); err != nil {
		t.Fatalf("a nil Set must do nothing: %v", err)
	}
	s, err := Parse(LoadStaged+"=error@2", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var got []bool
	for range 3 {
		got = append(got, errors.Is(s.Hit(LoadStaged), ErrInjected))
	}
	if got[0] || !got[1] || got[2] {
		t.Errorf("error@2 struck at hits %v, want the second only", got)
	}
	if err := s.Hit(LoadCommitted); err != nil {
		t.Errorf("an unarmed point struck: %v", err)
	}
}
