package pgwire

import (
	"syscall"
	"testing"
)

// TestAtLowPriority: the statement runs on a thread at nice 19; the
// caller's thread keeps its priority.
func TestAtLowPriority(t *testing.T) {
	// getpriority's raw syscall answers 20 - nice.
	nice := func() int {
		p, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
		if err != nil {
			t.Fatal(err)
		}
		return 20 - p
	}
	before := nice()
	got, err := atLowPriority(func() (int, error) { return nice(), nil })
	if err != nil || got != 19 {
		t.Errorf("the statement's thread: nice %d, %v; want 19", got, err)
	}
	if after := nice(); after != before {
		t.Errorf("the caller's thread went from nice %d to %d", before, after)
	}
}
