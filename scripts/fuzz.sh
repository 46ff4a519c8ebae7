#!/usr/bin/env bash
# Runs every fuzz target for DURATION each and fails if one executed fewer
# than FLOOR inputs: a fuzz run that spends its time minimizing proves
# nothing. make test runs it briefly; make fuzz for minutes.
#   scripts/fuzz.sh [DURATION] [FLOOR]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
floor=${2:-2000}
targets=(
	"./parse FuzzDecode"
	"./parse FuzzPlainTokens"
	"./parse FuzzBatch"
	"./api FuzzNotificationParams"
	"./api FuzzReportQueries"
	"./api FuzzVerifyToken"
	"./intake/sftpd FuzzFileName"
)
for target in "${targets[@]}"; do
	pkg=${target% *} name=${target#* }
	# Go minimizes each new input for up to a minute by default: with that,
	# a 15 s run once executed 16 inputs.
	if ! out=$(go test -tags=duckdb_arrow -run '^$' -fuzz "^$name\$" -fuzztime "$duration" -fuzzminimizetime 1s "$pkg" 2>&1); then
		echo "$out"
		echo "$name: FAILED (a crasher is saved under $pkg/testdata/fuzz/$name: commit it as a regression seed)"
		exit 1
	fi
	execs=$(grep -o 'execs: [0-9]*' <<<"$out" | tail -1 | grep -o '[0-9]*' || echo 0)
	printf '%-24s %8d inputs in %s\n' "$name" "$execs" "$duration"
	if ((execs < floor)); then
		echo "$name executed $execs inputs, under the floor of $floor: it does not fuzz"
		exit 1
	fi
done
