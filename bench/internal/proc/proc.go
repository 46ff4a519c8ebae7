// Package proc holds what the benchmarks need of a flatfiler server they
// start: waiting for it to answer, reading its peak memory, delivering a
// flat file to it as a partner does, and copying its warehouse.
package proc

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// WaitReady waits up to a minute for the server at addr to answer
// /api/v2/ping with the API key.
func WaitReady(addr, apiKey string) error {
	for i := 0; i < 600; i++ {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/v2/ping", nil)
		req.SetBasicAuth(apiKey, "")
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("server at %s did not answer /api/v2/ping", addr)
}

// PeakRSS reads a live process's high-water resident set in bytes (Linux).
func PeakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			_, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmHWM")
}
