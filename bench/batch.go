package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sourcegraph/conc/pool"

	"github.com/flatfiler/flatfiler/bench/internal/proc"
	"github.com/flatfiler/flatfiler/fixtures/gen"
)

const (
	batchKey      = "bench-batch-key-0123456789abcdef"
	batchHTTPAddr = "127.0.0.1:18780"
	batchSFTPAddr = "127.0.0.1:18722"
)

// batchGenVersion names generated batches, as genVersion names files.
const batchGenVersion = "v3"

// batchResult is one large batch, from the first byte of its PUT to its
// callback received.
type batchResult struct {
	size                       string
	shape                      string // gen's, or empty for a file of the caller's
	bytes, records             int64
	putSec, appliedSec, cbSec  float64
	status                     string
	peakRSS                    int64
	small                      []time.Duration // PUT to callback, each small batch
	smallParallel, smallErrors int
	// flat is a flat file of the same shape and size delivered to the same
	// server (SFTP upload, notification, job), when gen wrote the batch.
	flat proc.Delivered
}

// callbacks is the partner's HTTPS receiver: it says when each batch's
// callback (webhook-id) arrived.
type callbacks struct {
	*httptest.Server
	mu      sync.Mutex
	arrived map[string]chan time.Time
}

func (c *callbacks) waiter(id string) chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.arrived[id]
	if !ok {
		ch = make(chan time.Time, 1)
		c.arrived[id] = ch
	}
	return ch
}

func newCallbacks() *callbacks {
	c := &callbacks{arrived: map[string]chan time.Time{}}
	c.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		at := time.Now()
		w.WriteHeader(http.StatusNoContent)
		select {
		case c.waiter(r.Header.Get("webhook-id")) <- at:
		default: // a second delivery of the same batch
		}
	}))
	return c
}

func (r batchResult) recordsPerSec() float64 { return float64(r.records) / r.appliedSec }

// benchBatch starts flatfiler serve on a fresh data directory and
// measures a batch of size pushed and applied, then small batches sent
// parallel at a time.
//
// A size such as 100MB is a batch of shape gen writes (cached in dir); a
// path to a .json file is that batch, of any shape.
func benchBatch(bin, dir, size, shape string, small, parallel int, serveArgs ...string) (batchResult, error) {
	r := batchResult{size: size, shape: shape, smallParallel: parallel}
	path := size
	if n, err := gen.ParseSize(size); err == nil {
		path = generatedBatch(dir, shape, size)
		if err := generateBatch(path, shape, n); err != nil {
			return r, err
		}
	} else {
		r.size = filepath.Base(path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return r, err
	}
	r.bytes = st.Size()

	receiver := newCallbacks()
	defer receiver.Close()
	data := filepath.Join(dir, "batch-data")
	if err := os.RemoveAll(data); err != nil {
		return r, err
	}
	caFile := filepath.Join(dir, "batch-callback-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: receiver.Certificate().Raw}), 0o644); err != nil {
		return r, err
	}
	out, err := exec.Command(bin, "partner", "add", "demo", "--data", data, "--domain", "bench.flatfiler.local", "--api-key", batchKey, "--json").Output()
	if err != nil {
		return r, fmt.Errorf("partner add: %w: %s", err, out)
	}
	server := proc.Server{HTTPAddr: batchHTTPAddr, SFTPAddr: batchSFTPAddr, APIKey: batchKey}
	var creds struct {
		SFTPPassword string `json:"sftp_password"`
	}
	if err := json.Unmarshal(out, &creds); err != nil {
		return r, fmt.Errorf("partner add: %w: %s", err, out)
	}
	server.SFTPPassword = creds.SFTPPassword
	srv := exec.Command(bin, append([]string{"serve", "--data", data, "--http-addr", batchHTTPAddr, "--sftp-addr", batchSFTPAddr,
		"--sql-addr", "", "--log-level", "warn", "--callback-ca", caFile, "--callback-allow-private"}, serveArgs...)...)
	srv.Stdout, srv.Stderr = io.Discard, os.Stderr
	if err := srv.Start(); err != nil {
		return r, err
	}
	defer func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		_ = srv.Wait()
	}()
	if err := proc.WaitReady(batchHTTPAddr, batchKey); err != nil {
		return r, err
	}

	// The receiver's URL goes in as the batch's last member, so it wins
	// over a callback the file may name itself.
	f, err := os.Open(path)
	if err != nil {
		return r, err
	}
	defer f.Close()
	end, err := closingBrace(f, r.bytes)
	if err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	tail := `, "callback": "` + receiver.URL + `/large"}`
	body := io.MultiReader(io.NewSectionReader(f, 0, end), strings.NewReader(tail))
	fmt.Fprintf(os.Stderr, "pushing %s ...\n", path)
	start := time.Now()
	id, err := putBatch(body, end+int64(len(tail)))
	if err != nil {
		return r, err
	}
	r.putSec = time.Since(start).Seconds()
	status, err := waitBatch(id)
	if err != nil {
		return r, err
	}
	r.appliedSec = time.Since(start).Seconds()
	r.status = status.Status
	for _, t := range status.Totals {
		r.records += t.Total
	}
	select {
	case at := <-receiver.waiter(id):
		r.cbSec = at.Sub(start).Seconds()
	case <-time.After(10 * time.Minute):
		return r, fmt.Errorf("batch %s: no callback within 10 minutes", id)
	}
	if r.peakRSS, err = proc.PeakRSS(srv.Process.Pid); err != nil {
		return r, err
	}
	if shape != "" {
		// The flat file of the same shape and size, delivered as an FI
		// delivers one: a like-for-like pair from arrival to applied.
		flat, _, err := prepare(dir, shape, size)
		if err != nil {
			return r, err
		}
		fmt.Fprintf(os.Stderr, "delivering %s by SFTP ...\n", flat)
		if r.flat, err = proc.Deliver(context.Background(), server, flat); err != nil {
			return r, err
		}
	}

	fmt.Fprintf(os.Stderr, "pushing %d small batches, %d at a time ...\n", small, parallel)
	var mu sync.Mutex
	p := pool.New().WithMaxGoroutines(parallel)
	for i := range small {
		p.Go(func() {
			d, err := smallBatch(receiver, i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fmt.Fprintf(os.Stderr, "small batch %d: %v\n", i, err)
				r.smallErrors++
				return
			}
			r.small = append(r.small, d)
		})
	}
	p.Wait()
	slices.Sort(r.small)
	return r, nil
}

// smallBatch pushes 1 user, 1 account and 10 transactions and waits for
// its callback.
func smallBatch(receiver *callbacks, i int) (time.Duration, error) {
	var txns []string
	for t := range 10 {
		txns = append(txns, fmt.Sprintf(`{"reference_id": "%d", "balance": "-%d.25", "posted_at": "2026-11-%02d", "memo": "DUNKIN #%d BOSTON MA"}`, t, 3+t, 1+t, 100+t))
	}
	body := fmt.Sprintf(`{"callback": "%s/small", "users": [{"partner_customer_id": "small-%d", "first_name": "A", "last_name": "B", "email": "s%d@example.com",
"accounts": [{"reference_id": "acct-%d", "name": "Checking", "account_type": "checking", "account_balances": [{"balance_type": "current", "balance_amount": "100.00"}],
"transactions": [%s]}]}]}`, receiver.URL, i, i, i, strings.Join(txns, ","))
	start := time.Now()
	id, err := putBatch(strings.NewReader(body), int64(len(body)))
	if err != nil {
		return 0, err
	}
	select {
	case at := <-receiver.waiter(id):
		return at.Sub(start), nil
	case <-time.After(time.Minute):
		return 0, fmt.Errorf("batch %s: no callback within a minute", id)
	}
}

func putBatch(body io.Reader, length int64) (string, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPut, "http://"+batchHTTPAddr+"/api/v2/batches", body)
	if err != nil {
		return "", err
	}
	req.ContentLength = length
	req.SetBasicAuth(batchKey, "")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var a struct {
		BatchID string `json:"batch_id"`
	}
	if res.StatusCode != http.StatusOK || json.Unmarshal(raw, &a) != nil || a.BatchID == "" {
		return "", fmt.Errorf("PUT /api/v2/batches: %s: %s", res.Status, raw)
	}
	return a.BatchID, nil
}

type batchStatus struct {
	Status string `json:"status"`
	Totals map[string]struct {
		Total int64 `json:"total"`
	} `json:"totals"`
}

func waitBatch(id string) (batchStatus, error) {
	var st batchStatus
	for deadline := time.Now().Add(30 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+batchHTTPAddr+"/api/v2/batches/"+id, nil)
		req.SetBasicAuth(batchKey, "")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return st, err
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		st = batchStatus{}
		if err := json.Unmarshal(bytes.TrimSpace(raw), &st); err != nil {
			return st, fmt.Errorf("batch status: %w: %s", err, raw)
		}
		if st.Status != "new" && st.Status != "processing" {
			return st, nil
		}
	}
	return st, fmt.Errorf("batch %s not applied within 30 minutes", id)
}

func reportBatches(batches []batchResult) {
	fmt.Printf("\npush batch benchmark (PUT /api/v2/batches on flatfiler serve, callback to a local HTTPS receiver)\n\n")
	fmt.Println("| shape | batch | size | stored (200) s | applied s | callback received s | MB/s to applied | records/s to applied | server peak RSS |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, r := range batches {
		mb := float64(r.bytes) / 1e6
		fmt.Printf("| %s | %s (%s) | %.0f MB, %d records | %.1f | %.1f | %.1f | %.1f | %.0f | %.0f MB |\n",
			r.shape, r.size, r.status, mb, r.records, r.putSec, r.appliedSec, r.cbSec, mb/r.appliedSec, r.recordsPerSec(), float64(r.peakRSS)/1e6)
	}
	for _, r := range batches {
		if r.flat.Records == 0 {
			continue
		}
		flat := float64(r.flat.Records) / r.flat.Seconds
		fmt.Printf("records/s from arrival to applied on the same server: the %s batch %.0f (PUT), the %s %s flat file %.0f (SFTP upload, notification, job: %.1f s): %.2fx\n",
			r.shape, r.recordsPerSec(), r.size, r.shape, flat, r.flat.Seconds, r.recordsPerSec()/flat)
	}
	for _, r := range batches {
		if len(r.small) == 0 {
			continue
		}
		q := func(p float64) float64 { return float64(r.small[int(p*float64(len(r.small)-1))].Microseconds()) / 1e3 }
		fmt.Printf("\nsmall batches (1 user, 1 account, 10 transactions), %d sent %d at a time, PUT to callback received: p50 %.0f ms, p99 %.0f ms, max %.0f ms, errors %d\n",
			len(r.small), r.smallParallel, q(0.50), q(0.99), q(1), r.smallErrors)
	}
}

// generatedBatch names gen's batch of shape and size; the mixed shape's
// keeps the name it had before gen had shapes.
func generatedBatch(dir, shape, size string) string {
	if shape == "mixed" {
		return filepath.Join(dir, "generated-batch-"+batchGenVersion+"-"+size+".json")
	}
	return filepath.Join(dir, "generated-batch-"+shape+"-"+batchGenVersion+"-"+size+".json")
}

// generateBatch writes gen's batch of shape and n bytes to path, unless
// it is there.
func generateBatch(path, shape string, n int64) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	fmt.Fprintf(os.Stderr, "generating %s ...\n", path)
	return writeFile(path, func(w io.Writer) error {
		_, err := gen.Write(w, gen.Options{Bytes: n, Seed: 2, BadRate: 0.001, Batch: true, Shape: shape})
		return err
	})
}

// closingBrace finds the offset of the batch object's closing '}', the
// last byte of the file but white space.
func closingBrace(f *os.File, size int64) (int64, error) {
	buf := make([]byte, min(size, 4096))
	if _, err := f.ReadAt(buf, size-int64(len(buf))); err != nil {
		return 0, err
	}
	trimmed := bytes.TrimRight(buf, " \t\r\n")
	if len(trimmed) == 0 || trimmed[len(trimmed)-1] != '}' {
		return 0, fmt.Errorf("the batch does not end with '}'")
	}
	return size - int64(len(buf)) + int64(len(trimmed)) - 1, nil
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
