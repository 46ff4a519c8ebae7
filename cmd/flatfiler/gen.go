package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/flatfiler/flatfiler/fixtures/gen"
)

func genCmd(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	users := fs.Int("users", 1000, "users to write")
	size := fs.String("size", "", "write users until the file reaches this size (e.g. 1GiB, 500MB); overrides --users")
	seed := fs.Uint64("seed", 1, "random seed: the same seed gives the same file")
	badRate := fs.Float64("bad-rate", 0, "fraction of accounts and transactions made invalid (0 to 1)")
	batch := fs.Bool("batch", false, "write a push batch (the JSON body of PUT /api/v2/batches) instead of a combined XML file")
	callback := fs.String("callback", "", "with --batch: the batch's callback URL")
	shape := fs.String("shape", "mixed", "the kind of institution: "+strings.Join(gen.ShapeNames(), ", ")+" (see README)")
	nightOf := fs.String("night-of", "mixed", "with --shape nightly: the shape of the first file it follows (the file gen writes with the same --size or --users, --seed and --bad-rate)")
	out := fs.String("o", "", "output file (required; - for stdout)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: flatfiler gen [flags] -o FILE\n\nWrites a deterministic, realistic combined flat file, or with --batch a push batch, of the --shape an institution sends.")
		fs.PrintDefaults()
	}
	if _, err := parseInterspersed(fs, args); err != nil {
		return 2
	}
	if *out == "" {
		fs.Usage()
		return 2
	}
	if *callback != "" && !*batch {
		fmt.Fprintln(stderr, "flatfiler gen: --callback needs --batch")
		return 2
	}
	opts := gen.Options{Users: *users, Seed: *seed, BadRate: *badRate, Batch: *batch, Callback: *callback,
		Shape: *shape, NightOf: *nightOf}
	if err := opts.Check(); err != nil {
		fmt.Fprintf(stderr, "flatfiler gen: %v\n", err)
		return 2
	}
	if *size != "" {
		n, err := gen.ParseSize(*size)
		if err != nil {
			fmt.Fprintf(stderr, "flatfiler gen: --size: %v\n", err)
			return 2
		}
		opts.Bytes = n
	}
	w := stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintf(stderr, "flatfiler gen: %v\n", err)
			return 1
		}
		defer f.Close()
		w = f
	}
	st, err := gen.Write(w, opts)
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler gen: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "wrote %s: %d bytes, %d users, %d accounts, %d transactions, %d invalid, %d deletes\n",
		*out, st.Bytes, st.Users, st.Accounts, st.Transactions, st.Bad, st.Deletes)
	return 0
}
