// Package failpoint names the moments where a crash or a full disk
// matters to "applied whole or not at all, exactly once", so that tests can
// make the real process fail exactly there instead of sampling kill -9 at
// random times.
//
// A Set is made from a spec (FLATFILER_FAILPOINTS, read by the command)
// and handed to the components that have points; a nil Set does nothing,
// which is what production runs have. Points are hit a few times per file,
// never per record.
package failpoint

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// The points, in the order a delivered file passes them.
const (
	// NotifyAccepting: a notification was checked and is about to be
	// recorded, before any file moves.
	NotifyAccepting = "notify/accepting"
	// NotifySpooled: its files are in the spool, the notification still
	// recorded as accepting (never answered).
	NotifySpooled = "notify/spooled"
	// NotifyAccepted: recorded as accepted, not answered yet.
	NotifyAccepted = "notify/accepted"
	// JobClaimed: a job is recorded as processing, its file not read yet.
	JobClaimed = "job/claimed"
	// LoadStaged: a batch of the file is staged (spilled past the memory
	// limit); the warehouse is unchanged.
	LoadStaged = "load/staged"
	// LoadBeforeCommit: the file's transaction holds every change, before
	// COMMIT.
	LoadBeforeCommit = "load/before-commit"
	// LoadCommitted: COMMIT returned (the file is in the log), before the
	// checkpoint.
	LoadCommitted = "load/committed"
	// JobIngested: the warehouse has the file, the job's final state is not
	// recorded yet.
	JobIngested = "job/ingested"
	// JobRecorded: the final state is recorded, the file not archived yet.
	JobRecorded = "job/recorded"
	// JobArchiving: the archive folder exists, the file not moved into it.
	JobArchiving = "job/archiving"
)

// CallbackAnswered: a push batch's callback attempt has its answer (or
// its error), the outcome not recorded yet. A crash here after a 2xx sends
// the callback again at the next start, with the same webhook-id.
const CallbackAnswered = "callback/answered"

// Points lists every point a delivered file passes, in order.
var Points = []string{NotifyAccepting, NotifySpooled, NotifyAccepted, JobClaimed, LoadStaged,
	LoadBeforeCommit, LoadCommitted, JobIngested, JobRecorded, JobArchiving}

// known is every point a spec may arm.
var known = append(slices.Clone(Points), CallbackAnswered)

// ErrInjected is what an "error" action returns.
var ErrInjected = errors.New("failpoint: injected error")

// An action is what happens at a point:
//
//	crash        the process kills itself (SIGKILL): no deferred work runs,
//	             DuckDB is not closed, nothing is flushed
//	fill(PATH)   PATH is written until its file system is full, once; the
//	             point then goes on, and the next write fails for real
//	error        the point's caller gets ErrInjected
//
// An action may be limited to the Nth hit of its point: crash@3.
type action struct {
	kind string
	arg  string
	nth  int // 0: every hit
}

// Set is the points armed in this process.
type Set struct {
	log     io.Writer
	mu      sync.Mutex
	actions map[string]action
	hits    map[string]int
}

// Parse reads "point=action;point=action". An empty spec gives a nil Set.
func Parse(spec string, log io.Writer) (*Set, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, nil
	}
	s := &Set{log: log, actions: map[string]action{}, hits: map[string]int{}}
	for _, item := range strings.Split(spec, ";") {
		name, act, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || !slices.Contains(known, name) {
			return nil, fmt.Errorf("failpoint %q: want POINT=ACTION with POINT one of %s", item, strings.Join(known, ", "))
		}
		a, err := parseAction(act)
		if err != nil {
			return nil, fmt.Errorf("failpoint %s: %w", name, err)
		}
		s.actions[name] = a
	}
	return s, nil
}

func parseAction(text string) (action, error) {
	var a action
	if body, n, ok := strings.Cut(text, "@"); ok {
		nth, err := strconv.Atoi(n)
		if err != nil || nth < 1 {
			return a, fmt.Errorf("%q: the hit after @ is a number from 1", text)
		}
		text, a.nth = body, nth
	}
	switch {
	case text == "crash" || text == "error":
		a.kind = text
	case strings.HasPrefix(text, "fill(") && strings.HasSuffix(text, ")") && len(text) > len("fill()"):
		a.kind, a.arg = "fill", text[len("fill("):len(text)-1]
	default:
		return a, fmt.Errorf("unknown action %q: want crash, error or fill(PATH)", text)
	}
	return a, nil
}

// Hit runs the point's action, if armed. Only "error" returns non-nil.
func (s *Set) Hit(name string) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	a, ok := s.actions[name]
	s.hits[name]++
	hit := s.hits[name]
	if ok && a.kind == "fill" {
		delete(s.actions, name) // the disk stays full until someone frees it
	}
	s.mu.Unlock()
	if !ok || a.nth > 0 && hit != a.nth {
		return nil
	}
	fmt.Fprintf(s.log, "failpoint %s: %s (hit %d)\n", name, a.kind, hit)
	switch a.kind {
	case "crash":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	case "error":
		return fmt.Errorf("%s: %w", name, ErrInjected)
	case "fill":
		if err := Fill(a.arg); err != nil {
			fmt.Fprintf(s.log, "failpoint %s: fill: %v\n", name, err)
		}
	}
	return nil
}

// Fill writes path until its file system has no room left, and keeps the
// file: removing it frees the space.
func Fill(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for len(buf) > 0 {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				return err
			}
			buf = buf[:len(buf)/2] // the last blocks, to the byte
		}
	}
	return f.Sync()
}
