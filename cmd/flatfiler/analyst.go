package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/flatfiler/flatfiler/api/pgwire"
)

const analystUsage = "Usage: flatfiler analyst add NAME [--data DIR] [--partners a,b | --all-partners] [--json]"

// analystCmd manages the people who query the warehouse over the SQL
// endpoint.
func analystCmd(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "add" {
		fmt.Fprintln(stderr, analystUsage)
		return 2
	}
	fs := flag.NewFlagSet("analyst add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./data", "data directory of the server")
	partners := fs.String("partners", "", "comma-separated partners whose rows the analyst sees")
	all := fs.Bool("all-partners", false, "the analyst sees every partner's rows")
	asJSON := fs.Bool("json", false, `print {"name","password"}`)
	fs.Usage = func() {
		fmt.Fprintln(stderr, analystUsage+"\n\nCreates an analyst of the SQL endpoint and prints the password, once.")
		fs.PrintDefaults()
	}
	if v, ok := os.LookupEnv(envName("data")); ok {
		*data = v
	}
	rest, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return 2
	}
	if len(rest) != 1 {
		fs.Usage()
		return 2
	}
	var scope []string
	for _, p := range strings.Split(*partners, ",") {
		if p = strings.TrimSpace(p); p != "" {
			scope = append(scope, p)
		}
	}
	analysts, err := pgwire.OpenAnalysts(filepath.Join(*data, "analysts"))
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler analyst: %v\n", err)
		return 1
	}
	password, err := analysts.Add(rest[0], scope, *all)
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler analyst: %v\n", err)
		return 1
	}
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(map[string]string{"name": rest[0], "password": password})
		return 0
	}
	fmt.Fprintf(stdout, "analyst %s created. The password is shown this once:\n  %s\n", rest[0], password)
	fmt.Fprintf(stdout, "Connect: psql \"postgres://%s@127.0.0.1:5433/warehouse\"\n", rest[0])
	return 0
}
