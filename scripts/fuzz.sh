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
	"./parse FuzzWalkUser"
	"./api FuzzNotificationParams"
	"./api FuzzReportQueries"
	"./api FuzzVerifyToken"
	"./api FuzzClaimedPartner"
	"./intake/sftpd FuzzFileName"
	"./stages/money FuzzParseFormat"
	"./intake/harvest FuzzReadEnvelope"
)
for target in "${targets[@]}"; do
	pkg=${target% *} name=${target#* }
	# Go minimizes each new input for up to a minute by default: with that,
	# a 15 s run once executed 16 inputs.
	corpus="$pkg/testdata/fuzz/$name"
	before=$(ls "$corpus" 2>/dev/null || true)
	if ! out=$(go test -tags=duckdb_arrow -run '^$' -fuzz "^$name\$" -fuzztime "$duration" -fuzzminimizetime 1s "$pkg" 2>&1); then
		after=$(ls "$corpus" 2>/dev/null || true)
		# Go 1.26's fuzz coordinator can report the end of -fuzztime itself
		# as "context deadline exceeded", writing no input (golang/go#75804,
		# fixed in 1.27): without a new input in the corpus, nothing failed.
		if [[ $before != "$after" ]] || ! grep -q 'context deadline exceeded' <<<"$out"; then
			echo "$out"
			echo "$name: FAILED (a crasher is saved under $corpus: commit it as a regression seed)"
			exit 1
		fi
		echo "$name: the fuzz coordinator's end-of-time race (golang/go#75804), no input written: not a failure"
	fi
	execs=$(grep -o 'execs: [0-9]*' <<<"$out" | tail -1 | grep -o '[0-9]*' || echo 0)
	printf '%-24s %8d inputs in %s\n' "$name" "$execs" "$duration"
	if ((execs < floor)); then
		echo "$name executed $execs inputs, under the floor of $floor: it does not fuzz"
		exit 1
	fi
done
