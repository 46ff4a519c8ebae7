// Command bench measures end-to-end ingest against the floor of reading the
// file (crypto/md5 over it), and the ingest's peak RSS, on generated files of
// every shape gen draws (README, flatfiler gen); then push batches of those
// shapes PUT to flatfiler serve and applied, and the latency of small batches
// from PUT to callback received.
//
//	go run -tags duckdb_arrow ./bench --bin bin/flatfiler --shapes mixed,members,cards,nightly --sizes 1GiB --large 4GiB
//
// Files are generated once into --out and reused; each ingest starts from an
// empty warehouse (the nightly file from a copy of the mixed file's) and runs
// in a child process so its peak RSS is its own. For --compare-enrich SIZE,
// ingest runs --rounds times with enrichment and as many without, alternating
// (ABBA), and the medians are compared.
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
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/flatfiler/flatfiler/bench/internal/proc"
	"github.com/flatfiler/flatfiler/fixtures/gen"
)

type result struct {
	shape, size           string
	bytes                 int64
	md5Seconds, ingestSec float64
	records               int64
	peakRSS               int64 // bytes
	status                string
}

func (r result) recordsPerSec() float64 { return float64(r.records) / r.ingestSec }

// The first file's business date, and the nightly file's, a day later.
const firstAsOf, nightAsOf = "2026-11-01", "2026-11-02"

func main() {
	bin := flag.String("bin", "bin/flatfiler", "flatfiler binary to measure")
	shapes := flag.String("shapes", "mixed,members,cards,nightly", "comma-separated shapes of generated files (gen --shape)")
	sizes := flag.String("sizes", "1GiB", "comma-separated sizes of each shape's file (empty: none)")
	large := flag.String("large", "4GiB", "the size of one more file of the default shape (empty: none)")
	out := flag.String("out", "bench/out", "directory for generated files and warehouses")
	compare := flag.String("compare-enrich", "", "size at which to compare ingest with and without enrichment (empty: skip)")
	rounds := flag.Int("rounds", 7, "ingests each way for --compare-enrich")
	batch := flag.String("batch", "100MB", "the push batch PUT to flatfiler serve and applied: a size gen writes, or a .json file of any shape (empty: skip the batch benchmarks)")
	batchShapes := flag.String("batch-shapes", "mixed,members,cards", "comma-separated shapes of the batches gen writes for --batch SIZE")
	small := flag.Int("small-batches", 200, "small batches timed from PUT to callback")
	parallel := flag.Int("small-parallel", 8, "small batches in flight at a time")
	serveProfile := flag.String("serve-cpuprofile", "", "CPU profile of the server during the batch benchmarks")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	var results []result
	measure := func(shape, size string) {
		r, err := run(*bin, *out, shape, size)
		if err != nil {
			fail(err)
		}
		results = append(results, r)
		report(results)
	}
	for _, size := range list(*sizes) {
		for _, shape := range list(*shapes) {
			measure(shape, size)
		}
	}
	if *large != "" {
		measure("mixed", *large)
	}
	if *batch != "" {
		var serveArgs []string
		if *serveProfile != "" {
			serveArgs = append(serveArgs, "--cpuprofile", *serveProfile)
		}
		var batches []batchResult
		for i, shape := range batchShapesFor(*batch, list(*batchShapes)) {
			smallN := 0
			if i == 0 {
				smallN = *small // once: they measure the server, not the shape
			}
			b, err := benchBatch(*bin, *out, *batch, shape, smallN, *parallel, serveArgs...)
			if err != nil {
				fail(err)
			}
			batches = append(batches, b)
			reportBatches(batches)
		}
		for _, b := range batches {
			for _, r := range results {
				if r.shape == b.shape || b.shape == "" {
					fmt.Printf("records/s: the %s batch %.0f, the %s %s flat file %.0f (%.2fx)\n", b.shape, b.recordsPerSec(),
						r.size, r.shape, r.recordsPerSec(), b.recordsPerSec()/r.recordsPerSec())
				}
			}
		}
	}
	if *compare != "" {
		if err := compareEnrich(*bin, *out, *compare, *rounds); err != nil {
			fail(err)
		}
	}
}

func list(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// batchShapesFor is the shapes of the batches to push: one unnamed for a
// .json file of the caller's, gen's shapes for a size (a batch has no
// deletes, so no nightly one).
func batchShapesFor(batch string, shapes []string) []string {
	if _, err := gen.ParseSize(batch); err != nil {
		return []string{""}
	}
	return slices.DeleteFunc(shapes, func(s string) bool { return s == gen.Nightly })
}

// compareEnrich measures what enrichment costs an ingest.
func compareEnrich(bin, dir, size string, rounds int) error {
	path, _, err := prepare(dir, "mixed", size)
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
			r := result{shape: "mixed", size: size}
			db := warehousePath(dir, r.shape, size)
			// The previous run's warehouse and temp files are deleted now:
			// let the disk settle, so their release does not land on this run.
			removeWarehouse(db)
			syscall.Sync()
			time.Sleep(5 * time.Second)
			if err := ingest(bin, db, path, &r, "--as-of", firstAsOf, "--enrich="+fmt.Sprint(enrich)); err != nil {
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

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func warehousePath(dir, shape, size string) string {
	return filepath.Join(dir, "bench-"+shape+"-"+size+".duckdb")
}

func removeWarehouse(db string) {
	for _, p := range []string{db, db + ".wal"} {
		os.Remove(p)
	}
	os.RemoveAll(db + ".tmp")
}

// run measures one file: into an empty warehouse, or for the nightly
// shape into a copy of the warehouse its first file (the mixed one of the
// same size) made, ingested first if no run made it yet.
func run(bin, dir, shape, size string) (result, error) {
	r := result{shape: shape, size: size}
	path, md5Seconds, err := prepare(dir, shape, size)
	if err != nil {
		return r, err
	}
	st, _ := os.Stat(path)
	r.bytes, r.md5Seconds = st.Size(), md5Seconds
	db := warehousePath(dir, shape, size)
	removeWarehouse(db)
	asOf := firstAsOf
	if shape == gen.Nightly {
		first := warehousePath(dir, "mixed", size)
		if _, err := os.Stat(first); err != nil {
			firstFile, _, err := prepare(dir, "mixed", size)
			if err != nil {
				return r, err
			}
			if err := ingest(bin, first, firstFile, &result{}, "--as-of", firstAsOf); err != nil {
				return r, err
			}
		}
		if err := proc.CopyFile(first, db); err != nil {
			return r, err
		}
		asOf = nightAsOf
	}
	return r, ingest(bin, db, path, &r, "--as-of", asOf)
}

// genVersion names generated files: a change to what gen writes makes new
// ones. The mixed shape keeps the name it had before gen had shapes.
const genVersion = "v2"

func generatedFile(dir, shape, size string) string {
	if shape == "mixed" {
		return filepath.Join(dir, "generated-"+genVersion+"-"+size+".xml")
	}
	return filepath.Join(dir, "generated-"+shape+"-"+genVersion+"-"+size+".xml")
}

// prepare generates the file of shape and size if needed and times the
// floor: reading it once and hashing it, as the upload notification's MD5
// check does.
func prepare(dir, shape, size string) (string, float64, error) {
	n, err := gen.ParseSize(size)
	if err != nil {
		return "", 0, err
	}
	path := generatedFile(dir, shape, size)
	if _, err := os.Stat(path); err != nil {
		fmt.Fprintf(os.Stderr, "generating %s ...\n", path)
		err := writeFile(path, func(w io.Writer) error {
			_, err := gen.Write(w, gen.Options{Bytes: n, Seed: 1, BadRate: 0.001, Shape: shape})
			return err
		})
		if err != nil {
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

// ingest runs flatfiler ingest on path into the warehouse db.
func ingest(bin, db, path string, r *result, extra ...string) error {
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
	fmt.Println("| shape | file | size | records | md5 MB/s | ingest s | ingest MB/s | records/s | ingest/md5 time | peak RSS |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		mb := float64(r.bytes) / 1e6
		fmt.Printf("| %s | %s (%s) | %.0f MB | %d | %.0f | %.1f | %.1f | %.0f | %.1fx | %.0f MB |\n",
			r.shape, r.size, r.status, mb, r.records, mb/r.md5Seconds, r.ingestSec, mb/r.ingestSec,
			r.recordsPerSec(), r.ingestSec/r.md5Seconds, float64(r.peakRSS)/1e6)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}
