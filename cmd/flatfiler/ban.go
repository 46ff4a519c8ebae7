package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/flatfiler/flatfiler/intake/sftpd"
)

const banUsage = `Usage: flatfiler ban list [--data DIR] [--json]
       flatfiler ban remove ADDRESS [USER] [--data DIR]

SFTP logins banned for repeated failures, by address and user name (a
ban with no user covers the names that are no partner's). A running server
sees a removal at its next login attempt.`

func banCmd(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "list" && args[0] != "remove" {
		fmt.Fprintln(stderr, banUsage)
		return 2
	}
	fs := flag.NewFlagSet("ban "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./data", "data directory of the server")
	asJSON := fs.Bool("json", false, "print the bans as JSON")
	fs.Usage = func() { fmt.Fprintln(stderr, banUsage); fs.PrintDefaults() }
	if err := applyEnv(fs); err != nil {
		fmt.Fprintf(stderr, "flatfiler ban: %v\n", err)
		return 2
	}
	rest, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return 2
	}
	file := sftpd.BanFile(*data)
	if args[0] == "remove" {
		if len(rest) < 1 || len(rest) > 2 {
			fs.Usage()
			return 2
		}
		user := ""
		if len(rest) == 2 {
			user = rest[1]
		}
		n, err := sftpd.RemoveBans(file, rest[0], user)
		if err != nil {
			fmt.Fprintf(stderr, "flatfiler ban: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "lifted %d ban(s) of %s\n", n, rest[0])
		return 0
	}
	bans, err := sftpd.ListBans(file)
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler ban: %v\n", err)
		return 1
	}
	if *asJSON {
		if bans == nil {
			bans = []sftpd.Ban{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(bans)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tUSER\tFAILURES\tSINCE\tUNTIL")
	for _, b := range bans {
		user := b.User
		if user == "" {
			user = "(names that are no partner's)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", b.Address, user, b.Failures, b.Since.Format(time.RFC3339), b.Until.Format(time.RFC3339))
	}
	_ = tw.Flush()
	return 0
}
