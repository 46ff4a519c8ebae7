#!/usr/bin/env bash
# Deliver flat files as a partner does: upload with the OpenSSH sftp client,
# notify POST /api/v2/uploads/received with each file's MD5, then poll the
# jobs until they end. Prints each job's final JSON; exits non-zero if a job
# ends in error or the notification is refused.
#
#   FLATFILER_API_KEY=... FLATFILER_SFTP_PASSWORD=... scripts/deliver.sh FILE [FILE...]
#
# Settings (environment):
#   FLATFILER_API_KEY        the partner's API key (required)
#   FLATFILER_SFTP_PASSWORD  its SFTP password; without it, SSH keys are used
#   FLATFILER_SFTP_USER      default demo
#   FLATFILER_SFTP_HOST      default 127.0.0.1
#   FLATFILER_SFTP_PORT      default 2022
#   FLATFILER_URL            default http://127.0.0.1:8080
#   FLATFILER_TYPES          optional, comma-separated: combined, users, accounts, transactions
#   FLATFILER_KNOWN_HOSTS    default ./data/known_hosts (the server's key is accepted on first use)
set -euo pipefail

: "${FLATFILER_API_KEY:?set FLATFILER_API_KEY to the partner API key}"
user=${FLATFILER_SFTP_USER:-demo}
host=${FLATFILER_SFTP_HOST:-127.0.0.1}
port=${FLATFILER_SFTP_PORT:-2022}
url=${FLATFILER_URL:-http://127.0.0.1:8080}
known_hosts=${FLATFILER_KNOWN_HOSTS:-./data/known_hosts}
[ $# -gt 0 ] || { echo "usage: $0 FILE [FILE...]" >&2; exit 2; }
for f in "$@"; do [ -f "$f" ] || { echo "$0: $f: no such file" >&2; exit 2; }; done

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
mkdir -p "$(dirname "$known_hosts")"

ssh_opts=(-P "$port" -o "UserKnownHostsFile=$known_hosts" -o StrictHostKeyChecking=accept-new -o BatchMode=no)
if [ -n "${FLATFILER_SFTP_PASSWORD:-}" ]; then
	# OpenSSH reads passwords only from a terminal or an askpass program.
	printf '#!/bin/sh\nprintf "%%s\\n" "$FLATFILER_SFTP_PASSWORD"\n' >"$workdir/askpass"
	chmod 700 "$workdir/askpass"
	export SSH_ASKPASS="$workdir/askpass" SSH_ASKPASS_REQUIRE=force DISPLAY=${DISPLAY:-:0}
	ssh_opts+=(-o PreferredAuthentications=password -o PubkeyAuthentication=no)
fi

names=() hashes=()
for f in "$@"; do
	name=$(basename "$f")
	names+=("$name")
	hashes+=("$(md5sum "$f" | cut -d' ' -f1)")
	printf 'put "%s" "%s"\n' "$f" "$name" >>"$workdir/batch"
done
echo "uploading ${names[*]} to $user@$host:$port" >&2
sftp "${ssh_opts[@]}" -b "$workdir/batch" "$user@$host" >&2

join() { local IFS=,; echo "$*"; }
query="filenames=$(join "${names[@]}")&hashes=$(join "${hashes[@]}")"
[ -n "${FLATFILER_TYPES:-}" ] && query="$query&types=$FLATFILER_TYPES"
echo "notifying $url/api/v2/uploads/received" >&2
# 503: no node holds the warehouse for a moment (a cluster's takeover);
# nothing was taken, and the same notification again is safe.
for _ in $(seq 60); do
	status=$(curl -sS -o "$workdir/notified.json" -w '%{http_code}' -u "$FLATFILER_API_KEY:" \
		-X POST "$url/api/v2/uploads/received?$query")
	[ "$status" != 503 ] && break
	sleep 1
done
if [ "$status" != 202 ]; then
	echo "notification refused (HTTP $status):" >&2
	cat "$workdir/notified.json" >&2
	exit 1
fi

# Job IDs from the answer, without needing jq.
mapfile -t jobs < <(grep -o '"job_id": *"[^"]*"' "$workdir/notified.json" | sed 's/.*"\([^"]*\)"$/\1/')
failed=0
for job in "${jobs[@]}"; do
	while :; do
		code=$(curl -sS -o "$workdir/job.json" -w '%{http_code}' -u "$FLATFILER_API_KEY:" "$url/api/v2/uploads/$job") || true
		state=$(grep -o '"status": *"[^"]*"' "$workdir/job.json" | head -1 | sed 's/.*"\([^"]*\)"$/\1/') || true
		[ "$code" = 503 ] && state=processing # a takeover: ask again
		case "$state" in
		queued | processing) sleep 0.5 ;;
		*) break ;;
		esac
	done
	echo "job $job: $state" >&2
	cat "$workdir/job.json"
	[ "$state" = error ] && failed=1
done
exit $failed
