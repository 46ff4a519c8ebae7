package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/flatfiler/flatfiler/fixtures/harvestsim"
	"github.com/flatfiler/flatfiler/intake/harvest"
)

// harvestSimCmd serves a flat file's population as a partner's pull
// endpoint, for demos: the partner's side of a harvest.
func harvestSimCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("harvest-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "fixtures/spec/combined.xml", "a combined flat file: the partner's users, accounts and transactions")
	key := fs.String("key", "", "the shared key of the signatures, 128 hex digits (as partner set --harvest-key); empty: a new one, printed")
	addr := fs.String("addr", "127.0.0.1:8090", "address to serve on")
	shift := fs.Bool("shift-dates", true, "move every date so that the newest transaction is posted today (a harvest keeps the last 90 days)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: flatfiler harvest-sim [--key HEX] [--file FILE.xml] [--addr ADDR] [--shift-dates=false]\n\n"+
			"Serves a flat file's users, accounts and transactions as a partner's pull endpoint does\n"+
			"(the spec's Data Source Setup), verifying requests and signing answers with the key.")
		fs.PrintDefaults()
	}
	if err := applyEnv(fs); err != nil {
		fmt.Fprintf(stderr, "flatfiler harvest-sim: %v\n", err)
		return 2
	}
	if rest, err := parseInterspersed(fs, args); err != nil || len(rest) != 0 {
		return 2
	}
	if *key == "" {
		// A demo's: shown once, for partner set --harvest-key.
		b := make([]byte, harvest.KeySize)
		_, _ = rand.Read(b)
		*key = hex.EncodeToString(b)
		fmt.Fprintf(stdout, "harvest-sim: no --key given; the shared key is\n  %s\n", *key)
	}
	k, err := harvest.ParseKey(*key)
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler harvest-sim: --key: %v\n", err)
		return 2
	}
	opts := harvestsim.Options{Logger: slog.New(slog.NewTextHandler(stderr, nil))}
	if *shift {
		opts.ShiftTo = time.Now()
	}
	sim, err := harvestsim.Open(*file, k, opts)
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler harvest-sim: %v\n", err)
		return 1
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler harvest-sim: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "harvest-sim: serving %s as a partner's pull endpoint on http://%s\n", *file, ln.Addr())
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "flatfiler harvest-sim: %v\n", err)
		return 1
	}
	return 0
}
