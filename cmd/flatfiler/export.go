package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/flatfiler/flatfiler/warehouse"
)

func exportCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", warehouse.DefaultPath, "warehouse file")
	out := fs.String("out", "", "folder to write the Parquet files and manifest.json into")
	partnerID := fs.String("partner", "", "only this partner (default: every partner)")
	since := fs.String("since", "", "only the months from this date on, of the dated tables (YYYY-MM-DD)")
	tables := fs.String("tables", "", "comma-separated tables (default: "+strings.Join(warehouse.ExportTables, ",")+")")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: flatfiler export --out DIR [--db PATH] [--partner ID] [--since DATE] [--tables a,b]\n\n"+
			"Writes the warehouse as Parquet (zstd; partner_id=.../month=... partitions) with a manifest;\n"+
			"run again, it writes only the partners changed since. Works while serve runs, through it.")
		fs.PrintDefaults()
	}
	if rest, err := parseInterspersed(fs, args); err != nil || len(rest) != 0 || *out == "" {
		fs.Usage()
		return 2
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler export: %v\n", err)
		return 1
	}
	req := warehouse.ExportRequest{Out: dir, Partner: *partnerID, Since: *since}
	if *tables != "" {
		req.Tables = strings.Split(*tables, ",")
	}
	opts, err := req.Options()
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler export: %v\n", err)
		return 2
	}
	var m *warehouse.Manifest
	err = onWarehouse(ctx, *db, warehouse.Options{ReadOnly: true},
		func(store *warehouse.Store) (err error) { m, err = store.Export(ctx, opts); return err },
		func(admin adminInfo) (err error) { m, err = remoteExport(ctx, admin, req); return err })
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler export: %v\n", err)
		return 1
	}
	var rows int64
	for _, f := range m.Files {
		rows += f.Rows
	}
	fmt.Fprintf(stdout, "exported to %s: %d files, %d rows (manifest.json)\n", dir, len(m.Files), rows)
	for _, why := range m.Rewritten {
		fmt.Fprintf(stdout, "  written: %s\n", why)
	}
	if len(m.Rewritten) == 0 {
		fmt.Fprintln(stdout, "  nothing changed since the last export: no file written")
	}
	return 0
}

// remoteExport has the server that holds the warehouse write the export.
func remoteExport(ctx context.Context, a adminInfo, r warehouse.ExportRequest) (*warehouse.Manifest, error) {
	resp, err := adminPost(ctx, a, "/admin/export", r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := &warehouse.Manifest{}
	return m, json.NewDecoder(resp.Body).Decode(m)
}
