package pgwire

import (
	"runtime"
	"syscall"
)

// atLowPriority runs an analyst's statement on a thread of its own at the
// lowest priority (nice 19), so that while it runs the reporting API's
// reads, at the usual priority, take the cores they need and the analyst
// the rest: DuckDB (one thread a query: serve's --duckdb-threads 1)
// executes a statement on the thread that called it. Linux gives each
// thread its own nice value (setpriority with a thread id). The thread is
// never unlocked: it cannot be given its priority back unprivileged, so
// it ends with the goroutine.
func atLowPriority[T any](run func() (T, error)) (T, error) {
	type result struct {
		value T
		err   error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), 19)
		v, err := run()
		done <- result{v, err}
	}()
	r := <-done
	return r.value, r.err
}
