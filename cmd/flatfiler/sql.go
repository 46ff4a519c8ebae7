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
	"os"
	"path/filepath"
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
	query := strings.Join(rest, " ")
	err = onWarehouse(ctx, *db, warehouse.Options{ReadOnly: true},
		func(store *warehouse.Store) error { return store.Query(ctx, query, *format, stdout) },
		func(admin adminInfo) error { return remoteQuery(ctx, admin, query, *format, stdout) })
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler sql: %v\n", err)
		return 1
	}
	return 0
}

// onWarehouse runs local on the warehouse at path, or, when a running
// server holds it (DuckDB lets one process open it), remote through that
// server's admin endpoint.
func onWarehouse(ctx context.Context, path string, opts warehouse.Options, local func(*warehouse.Store) error, remote func(adminInfo) error) error {
	store, err := warehouse.Open(ctx, path, opts)
	if err != nil {
		admin, ok := readAdmin(filepath.Dir(path))
		if !ok {
			return err
		}
		return remote(admin)
	}
	defer store.Close()
	return local(store)
}

func readAdmin(dataDir string) (adminInfo, bool) {
	var a adminInfo
	data, err := os.ReadFile(filepath.Join(dataDir, adminFile))
	if err != nil || json.Unmarshal(data, &a) != nil || a.Token == "" {
		return adminInfo{}, false
	}
	return a, true
}

// remoteQuery runs the query on the server that holds the warehouse.
func remoteQuery(ctx context.Context, a adminInfo, query, format string, w io.Writer) error {
	resp, err := adminPost(ctx, a, "/admin/sql", map[string]string{"query": query, "format": format})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// adminPost sends body as JSON to the server that holds the warehouse,
// with its admin token; an answer other than 200 is its error's message.
func adminPost(ctx context.Context, a adminInfo, path string, body any) (*http.Response, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+a.HTTPAddr+path, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	if a.Shard != "" {
		req.Header.Set(shardHeader, a.Shard)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the warehouse is held by a server at %s that does not answer: %w", a.HTTPAddr, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return nil, errors.New(e.Error.Message)
	}
	return resp, nil
}
