package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/flatfiler/flatfiler/internal/backup"
	"github.com/flatfiler/flatfiler/warehouse"
)

// backupCmd copies a data directory into a new one, through the running
// server if there is one (it holds the warehouse), else directly.
func backupCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./data", "data directory of the server")
	out := fs.String("out", "", "new directory to copy it into: itself a data directory (serve --data OUT restores it)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: flatfiler backup --out DIR [--data DIR]\n\n"+
			"Copies the data directory while the server runs: its files, then the warehouse as one\n"+
			"snapshot. Restore by serving the copy (flatfiler serve --data DIR) or moving it into place.")
		fs.PrintDefaults()
	}
	if v, ok := os.LookupEnv(envName("data")); ok {
		*data = v
	}
	if rest, err := parseInterspersed(fs, args); err != nil || len(rest) != 0 || *out == "" {
		fs.Usage()
		return 2
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler backup: %v\n", err)
		return 1
	}
	var rep *backup.Report
	if _, err := os.Stat(filepath.Join(*data, backup.WarehouseFile)); err != nil {
		fmt.Fprintf(stderr, "flatfiler backup: no warehouse in %s: %v\n", *data, err)
		return 1
	}
	err = onWarehouse(ctx, filepath.Join(*data, backup.WarehouseFile), warehouse.Options{},
		func(store *warehouse.Store) (err error) { rep, err = backup.Run(ctx, *data, dir, store); return err },
		func(admin adminInfo) (err error) { rep, err = remoteBackup(ctx, admin, dir); return err })
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler backup: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "backed up to %s: %d files (%d MB) and the warehouse (%d MB) in %.1f s\n",
		rep.Out, rep.Files, rep.Bytes>>20, rep.Warehouse>>20, rep.Seconds)
	return 0
}

// remoteBackup has the server that holds the warehouse make the copy.
func remoteBackup(ctx context.Context, a adminInfo, out string) (*backup.Report, error) {
	resp, err := adminPost(ctx, a, "/admin/backup", map[string]string{"out": out})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	rep := &backup.Report{}
	return rep, json.NewDecoder(resp.Body).Decode(rep)
}
