package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/flatfiler/flatfiler/warehouse"
)

func sqlCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sql", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", warehouse.DefaultPath, "warehouse file")
	format := fs.String("format", "table", "output: table, csv or json")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: flatfiler sql [flags] QUERY\n\nRuns read-only SQL on the warehouse.")
		fs.PrintDefaults()
	}
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(rest) == 0 {
		fs.Usage()
		return 2
	}
	store, err := warehouse.Open(ctx, *db, warehouse.Options{ReadOnly: true})
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler sql: %v\n", err)
		return 1
	}
	defer store.Close()
	if err := store.Query(ctx, strings.Join(rest, " "), *format, stdout); err != nil {
		fmt.Fprintf(stderr, "flatfiler sql: %v\n", err)
		return 1
	}
	return 0
}
