// Package health answers whether the server is alive and whether it is
// ready to take work: the checks behind GET /healthz and GET /readyz, and
// the data directory's space, which both readiness and the metrics watch.
package health

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Check is one condition of readiness; Run returns why it does not hold.
type Check struct {
	Name string
	Run  func(context.Context) error
}

// Result is a check's outcome.
type Result struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Checker runs the readiness checks, each bounded by Timeout (default
// 2 s): a probe that hangs is a failed one.
type Checker struct {
	Checks  []Check
	Timeout time.Duration
}

// Ready runs every check, side by side.
func (c *Checker) Ready(ctx context.Context) (ready bool, results []Result) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	results = make([]Result, len(c.Checks))
	var wg sync.WaitGroup
	for i, check := range c.Checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- check.Run(ctx) }()
			var err error
			select {
			case err = <-done:
			case <-ctx.Done():
				err = fmt.Errorf("no answer within %s", timeout)
			}
			results[i] = Result{Name: check.Name, OK: err == nil}
			if err != nil {
				results[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	ready = true
	for _, r := range results {
		ready = ready && r.OK
	}
	return ready, results
}

// DataDir is the server's data directory, which must stay writable and
// keep MinFree bytes free for the server to take files.
type DataDir struct {
	Path    string
	MinFree uint64
}

// Space is the file system's free and total bytes under the directory
// (free as an unprivileged writer sees it).
func (d DataDir) Space() (free, size uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.Path, &st); err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// ErrLowSpace is a data directory with less than its MinFree free.
var ErrLowSpace = errors.New("data directory low on space")

// Check is the readiness check: a small file can be created, synced and
// removed, and MinFree bytes are free.
func (d DataDir) Check(context.Context) error {
	f, err := os.CreateTemp(d.Path, ".readyz-*")
	if err != nil {
		return fmt.Errorf("data directory not writable: %w", err)
	}
	_, werr := f.Write([]byte("ok"))
	serr := f.Sync()
	cerr := f.Close()
	os.Remove(f.Name())
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("data directory not writable: %w", err)
	}
	free, _, err := d.Space()
	if err != nil {
		return err
	}
	if free < d.MinFree {
		return fmt.Errorf("%w: %d MB free under %s, under the %d MB it keeps (--min-free-space)", ErrLowSpace, free>>20, filepath.Clean(d.Path), d.MinFree>>20)
	}
	return nil
}

// Collectors export the directory's space.
func (d DataDir) Collectors() []prometheus.Collector {
	space := func(pick func(free, size uint64) uint64) func() float64 {
		return func() float64 {
			free, size, err := d.Space()
			if err != nil {
				return -1
			}
			return float64(pick(free, size))
		}
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flatfiler_data_free_bytes", Help: "Bytes free on the file system of the data directory (-1: unreadable).",
		}, space(func(free, _ uint64) uint64 { return free })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flatfiler_data_size_bytes", Help: "Size of the file system of the data directory (-1: unreadable).",
		}, space(func(_, size uint64) uint64 { return size })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flatfiler_data_min_free_bytes", Help: "The free space under which the server is not ready (--min-free-space).",
		}, func() float64 { return float64(d.MinFree) }),
	}
}
