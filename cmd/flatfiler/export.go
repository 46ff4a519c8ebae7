package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/flatfiler/flatfiler/warehouse"
)

// exportRequest is what `flatfiler export` asks a running server for.
type exportRequest struct {
	Out     string   `json:"out"`
	Partner string   `json:"partner,omitempty"`
	Since   string   `json:"since,omitempty"`
	Tables  []string `json:"tables,omitempty"`
}

func (r exportRequest) options() (warehouse.ExportOptions, error) {
	opts := warehouse.ExportOptions{Dir: r.Out, Partner: r.Partner, Tables: r.Tables}
	if r.Since != "" {
		d, err := time.Parse(time.DateOnly, r.Since)
		if err != nil {
			return opts, fmt.Errorf("--since %q is not a date (YYYY-MM-DD)", r.Since)
		}
		opts.Since = d
	}
	return opts, nil
}

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
	req := exportRequest{Out: dir, Partner: *partnerID, Since: *since}
	if *tables != "" {
		req.Tables = strings.Split(*tables, ",")
	}
	opts, err := req.options()
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler export: %v\n", err)
		return 2
	}
	var m *warehouse.Manifest
	store, err := warehouse.Open(ctx, *db, warehouse.Options{ReadOnly: true})
	if err != nil {
		// A running server holds the warehouse; ask it.
		admin, ok := readAdmin(filepath.Dir(*db))
		if !ok {
			fmt.Fprintf(stderr, "flatfiler export: %v\n", err)
			return 1
		}
		if m, err = remoteExport(ctx, admin, req); err != nil {
			fmt.Fprintf(stderr, "flatfiler export: %v\n", err)
			return 1
		}
	} else {
		m, err = store.Export(ctx, opts)
		store.Close()
		if err != nil {
			fmt.Fprintf(stderr, "flatfiler export: %v\n", err)
			return 1
		}
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
func remoteExport(ctx context.Context, a adminInfo, r exportRequest) (*warehouse.Manifest, error) {
	body, _ := json.Marshal(r)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+a.HTTPAddr+"/admin/export", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the warehouse is held by a server at %s that does not answer: %w", a.HTTPAddr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return nil, errors.New(e.Error.Message)
	}
	m := &warehouse.Manifest{}
	return m, json.NewDecoder(resp.Body).Decode(m)
}
