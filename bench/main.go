// Command bench measures end-to-end ingest against the floor of reading the
// file (crypto/md5 over it), and the ingest's peak RSS, on generated files;
// then a push batch of --batch bytes PUT to flatfiler serve and applied, and
// the latency of small batches from PUT to callback received.
//
//	go run -tags duckdb_arrow ./bench --bin bin/flatfiler --sizes 1GiB,4GiB
//
// Files are generated once into --out and reused; each ingest starts from an
// empty warehouse and runs in a child process so its peak RSS is its own.
// For --compare-enrich SIZE, ingest runs --rounds times with enrichment and
// as many without, alternating (ABBA), and the medians are compared.
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
	"sort"
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
	sizes := flag.String("sizes", "1GiB,4GiB", "comma-separated sizes of generated files (empty: none)")
	out := flag.String("out", "bench/out", "directory for generated files and warehouses")
	compare := flag.String("compare-enrich", "1GiB", "size at which to compare ingest with and without enrichment (empty: skip)")
	rounds := flag.Int("rounds", 7, "ingests each way for --compare-enrich")
	batch := flag.String("batch", "100MB", "the push batch PUT to flatfiler serve and applied: a size gen writes, or a .json file of any shape (empty: skip the batch benchmarks)")
	small := flag.Int("small-batches", 200, "small batches timed from PUT to callback")
	parallel := flag.Int("small-parallel", 8, "small batches in flight at a time")
	serveProfile := flag.String("serve-cpuprofile", "", "CPU profile of the server during the batch benchmarks")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	var results []result
	for _, size := range strings.Split(*sizes, ",") {
		if strings.TrimSpace(size) == "" {
			continue
		}
		r, err := run(*bin, *out, strings.TrimSpace(size))
		if err != nil {
			fail(err)
		}
		results = append(results, r)
		report(results)
	}
	if *batch != "" {
		var serveArgs []string
		if *serveProfile != "" {
			serveArgs = append(serveArgs, "--cpuprofile", *serveProfile)
		}
		b, err := benchBatch(*bin, *out, *batch, *small, *parallel, serveArgs...)
		if err != nil {
			fail(err)
		}
		b.report()
		for _, r := range results {
			fmt.Printf("records/s: the batch %.0f, the %s flat file %.0f (%.2fx)\n", float64(b.records)/b.appliedSec, r.size,
				float64(r.records)/r.ingestSec, float64(b.records)/b.appliedSec/(float64(r.records)/r.ingestSec))
		}
	}
	if *compare != "" {
		if err := compareEnrich(*bin, *out, *compare, *rounds); err != nil {
			fail(err)
		}
	}
}

// compareEnrich measures what enrichment costs an ingest.
func compareEnrich(bin, dir, size string, rounds int) error {
	path, _, err := prepare(dir, size)
	if err != nil {
		return err
	}
	var on, off []float64
	for i := 0; i < rounds; i++ {
		// ABBA order: neither kind always runs first, after the other's
		// page cache and temp files.
		order := []bool{false, true}
		if i%2 == 1 {
			order = []bool{true, false}
		}
		for _, enrich := range order {
			// The previous run's warehouse and temp files are deleted now:
			// let the disk settle, so their release does not land on this run.
			settle(dir, size)
			r := result{size: size}
			if err := ingest(bin, dir, path, &r, "--enrich="+fmt.Sprint(enrich)); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "  enrich=%v: %.1f s\n", enrich, r.ingestSec)
			if enrich {
				on = append(on, r.ingestSec)
			} else {
				off = append(off, r.ingestSec)
			}
		}
	}
	mOn, mOff := median(on), median(off)
	fmt.Printf("\nenrichment cost at %s (median of %d each, alternating): without %.2f s, with %.2f s: %+.1f%%\n",
		size, rounds, mOff, mOn, 100*(mOn-mOff)/mOff)
	return nil
}

// settle deletes the size's warehouse files, syncs, and waits a little.
func settle(dir, size string) {
	db := filepath.Join(dir, "bench-"+size+".duckdb")
	for _, p := range []string{db, db + ".wal"} {
		os.Remove(p)
	}
	os.RemoveAll(db + ".tmp")
	syscall.Sync()
	time.Sleep(5 * time.Second)
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func run(bin, dir, size string) (result, error) {
	r := result{size: size}
	path, md5Seconds, err := prepare(dir, size)
	if err != nil {
		return r, err
	}
	st, _ := os.Stat(path)
	r.bytes, r.md5Seconds = st.Size(), md5Seconds
	return r, ingest(bin, dir, path, &r)
}

// genVersion names generated files: a change to what gen writes makes new ones.
const genVersion = "v2"

// prepare generates the file of size if needed and times the floor: reading
// it once and hashing it, as the upload notification's MD5 check does.
func prepare(dir, size string) (string, float64, error) {
	n, err := gen.ParseSize(size)
	if err != nil {
		return "", 0, err
	}
	path := filepath.Join(dir, "generated-"+genVersion+"-"+size+".xml")
	if st, err := os.Stat(path); err != nil || st.Size() < n {
		fmt.Fprintf(os.Stderr, "generating %s ...\n", path)
		f, err := os.Create(path)
		if err != nil {
			return "", 0, err
		}
		if _, err := gen.Write(f, gen.Options{Bytes: n, Seed: 1, BadRate: 0.001}); err != nil {
			return "", 0, err
		}
		if err := f.Close(); err != nil {
			return "", 0, err
		}
	}
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	if _, err := io.CopyBuffer(md5.New(), f, make([]byte, 1<<20)); err != nil {
		return "", 0, err
	}
	return path, time.Since(start).Seconds(), nil
}

// ingest runs flatfiler ingest on path into an empty warehouse.
func ingest(bin, dir, path string, r *result, extra ...string) error {
	db := filepath.Join(dir, "bench-"+r.size+".duckdb")
	for _, p := range []string{db, db + ".wal"} {
		os.Remove(p)
	}
	os.RemoveAll(db + ".tmp")
	cmd := exec.Command(bin, append(append([]string{"ingest", "--json", "--db", db}, extra...), path)...)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	fmt.Fprintf(os.Stderr, "ingesting %s ...\n", path)
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", cmd, err, stdout.String())
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
		return fmt.Errorf("report: %w", err)
	}
	r.status = rep.Status
	for _, c := range rep.Totals {
		r.records += c.Total
	}
	r.records += rep.Skipped
	return nil
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
