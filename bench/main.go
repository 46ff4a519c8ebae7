// Command bench measures end-to-end ingest against the floor of reading the
// file (crypto/md5 over it), and the ingest's peak RSS, on generated files.
//
//	go run -tags duckdb_arrow ./bench --bin bin/flatfiler --sizes 1GiB,4GiB
//
// Files are generated once into --out and reused; each ingest starts from an
// empty warehouse and runs in a child process so its peak RSS is its own.
package main

import (
	"bytes"
	"crypto/md5"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/flatfiler/flatfiler/fixtures/gen"
)

type result struct {
	size                  string
	bytes                 int64
	md5Seconds, ingestSec float64
	records               int64
	peakRSS               int64 // bytes
	status                string
}

func main() {
	bin := flag.String("bin", "bin/flatfiler", "flatfiler binary to measure")
	sizes := flag.String("sizes", "1GiB,4GiB", "comma-separated sizes of generated files")
	out := flag.String("out", "bench/out", "directory for generated files and warehouses")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	var results []result
	for _, size := range strings.Split(*sizes, ",") {
		r, err := run(*bin, *out, strings.TrimSpace(size))
		if err != nil {
			fail(err)
		}
		results = append(results, r)
		report(results)
	}
}

func run(bin, dir, size string) (result, error) {
	r := result{size: size}
	n, err := gen.ParseSize(size)
	if err != nil {
		return r, err
	}
	path := filepath.Join(dir, "generated-"+size+".xml")
	if st, err := os.Stat(path); err != nil || st.Size() < n {
		fmt.Fprintf(os.Stderr, "generating %s ...\n", path)
		f, err := os.Create(path)
		if err != nil {
			return r, err
		}
		if _, err := gen.Write(f, gen.Options{Bytes: n, Seed: 1, BadRate: 0.001}); err != nil {
			return r, err
		}
		if err := f.Close(); err != nil {
			return r, err
		}
	}
	st, _ := os.Stat(path)
	r.bytes = st.Size()

	// The floor: reading the file once and hashing it, as the upload
	// notification's MD5 check does.
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return r, err
	}
	h := md5.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return r, err
	}
	f.Close()
	r.md5Seconds = time.Since(start).Seconds()

	db := filepath.Join(dir, "bench-"+size+".duckdb")
	for _, p := range []string{db, db + ".wal"} {
		os.Remove(p)
	}
	os.RemoveAll(db + ".tmp")
	cmd := exec.Command(bin, "ingest", "--json", "--db", db, path)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	fmt.Fprintf(os.Stderr, "ingesting %s ...\n", path)
	start = time.Now()
	if err := cmd.Run(); err != nil {
		return r, fmt.Errorf("%s: %w\n%s", cmd, err, stdout.String())
	}
	r.ingestSec = time.Since(start).Seconds()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.peakRSS = ru.Maxrss * 1024 // kilobytes on Linux
	}
	var rep struct {
		Status string `json:"status"`
		Totals map[string]struct {
			Total int64 `json:"total"`
		} `json:"totals"`
		Skipped int64 `json:"skipped"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		return r, fmt.Errorf("report: %w", err)
	}
	r.status = rep.Status
	for _, c := range rep.Totals {
		r.records += c.Total
	}
	r.records += rep.Skipped
	return r, nil
}

func report(results []result) {
	fmt.Printf("\nflatfiler ingest benchmark (%d cores, %s/%s)\n\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	fmt.Println("| file | size | md5 MB/s | ingest s | ingest MB/s | records/s | ingest/md5 time | peak RSS |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		mb := float64(r.bytes) / 1e6
		fmt.Printf("| %s (%s) | %.0f MB | %.0f | %.1f | %.1f | %.0f | %.1fx | %.0f MB |\n",
			r.size, r.status, mb, mb/r.md5Seconds, r.ingestSec, mb/r.ingestSec,
			float64(r.records)/r.ingestSec, r.ingestSec/r.md5Seconds, float64(r.peakRSS)/1e6)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}
