// Command flatfiler ingests partner flat files into the DuckDB warehouse:
// as a server (SFTP, upload notifications, jobs) or one file at a time.
//
// It only wires packages together: parse, stages, warehouse and intake do the work.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/flatfiler/flatfiler/internal/failpoint"
)

const usage = `flatfiler: bulk ingest of personal-finance flat files into a DuckDB warehouse

Usage:
  flatfiler serve   [--data DIR] [--sftp-addr ADDR] [--http-addr ADDR] ...
  flatfiler partner add ID [--data DIR] [--domain D] [--ssh-key FILE.pub] [--json]
  flatfiler partner set ID [--data DIR] [--domain D] [--harvest-url URL --harvest-key HEX] ...
  flatfiler ingest [--db PATH] [--partner ID] [--type combined|users|accounts|transactions]
                   [--as-of YYYY-MM-DD] [--json] [--workers N] [--rules FILE] FILE...
  flatfiler sql    [--db PATH] [--format table|csv|json] QUERY
  flatfiler analyst add NAME [--data DIR] [--partners a,b | --all-partners] [--json]
  flatfiler export --out DIR [--db PATH] [--partner ID] [--since DATE] [--tables a,b]
  flatfiler backup --out DIR [--data DIR]
  flatfiler ban list [--data DIR] [--json] | ban remove ADDRESS [USER] [--data DIR]
  flatfiler gen    [--users N | --size SIZE] [--seed S] [--bad-rate R] -o FILE
  flatfiler enrich [--amount A] [--rules FILE] MEMO...
  flatfiler enrich-eval [--labels FILE] [--rules FILE]
  flatfiler harvest-sim --key HEX [--file FILE.xml] [--addr ADDR]

Run 'flatfiler COMMAND --help' for a command's flags.
`

// goMemoryLimit is the Go heap's share of the process's 512 MB budget
// (DuckDB's pool is --memory-limit, 128 MB, and DuckDB allocates about as
// much again beside it): past it the collector works harder rather than let
// the heap double. At 256 MiB a 4 GiB ingest with enrichment peaked at 521
// to 532 MB; at 180 MiB, 483 MB. GOMEMLIMIT overrides it. While a file
// commits the parser's heap is idle; --commit-memory-limit lets DuckDB
// take its room, at a cost that grows with the file (see warehouse.Options).
const goMemoryLimit = 192 << 20

// limitGoMemory sets the Go heap's share of the budget, unless GOMEMLIMIT
// does. Every flatfiler process calls it first, the tests' child processes
// too: a child without it measures another program.
func limitGoMemory() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(goMemoryLimit)
	}
}

func main() {
	limitGoMemory()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// faultsEnv arms named fault points (internal/failpoint) for crash and
// disk-full tests of the real process: "load/before-commit=crash;...".
const faultsEnv = "FLATFILER_FAILPOINTS"

func faultPoints(stderr io.Writer) (*failpoint.Set, error) {
	return failpoint.Parse(os.Getenv(faultsEnv), stderr)
}

// run dispatches a command line; it returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) int{
		"serve":       serveCmd,
		"partner":     partnerCmd,
		"ingest":      ingestCmd,
		"sql":         sqlCmd,
		"ban":         banCmd,
		"gen":         genCmd,
		"enrich":      enrichCmd,
		"enrich-eval": enrichEvalCmd,
		"harvest-sim": harvestSimCmd,
		"export":      exportCmd,
		"backup":      backupCmd,
		"analyst":     analystCmd,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "flatfiler: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	return cmd(ctx, args[1:], stdout, stderr)
}
