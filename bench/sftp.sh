#!/usr/bin/env bash
# SFTP upload speed: the same file through flatfiler's server (atomic publish
# and MD5/SHA-256 on arrival, as always) and through OpenSSH's sftp-server
# (Debian's sshd on a loopback port, started and stopped here), with the
# same OpenSSH client, cipher and key. Prints MB/s of both and the ratio.
#
#   bench/sftp.sh BIN SIZE [RUNS]     e.g. bench/sftp.sh bin/flatfiler 1GiB 3
set -euo pipefail

bin=$(realpath "${1:?usage: $0 BIN SIZE [RUNS]}")
size=${2:-1GiB}
runs=${3:-3}
cipher=${FLATFILER_BENCH_CIPHER:-aes128-gcm@openssh.com}
here=$(cd "$(dirname "$0")" && pwd)
out="$here/out"
mkdir -p "$out"
file="$out/generated-$size.xml"
[ -f "$file" ] || "$bin" gen --size "$size" -o "$file" >/dev/null
bytes=$(stat -c %s "$file")

tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ssh-keygen -q -t ed25519 -N '' -f "$tmp/id"
client=(-i "$tmp/id" -c "$cipher" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)

# flatfiler: a partner that logs in with the key.
"$bin" partner add bench --data "$tmp/ff" --ssh-key "$tmp/id.pub" --json >"$tmp/creds.json"
api_key=$(sed 's/.*"api_key":"\([^"]*\)".*/\1/' "$tmp/creds.json")
ff_sftp=$(free_port)
ff_http=$(free_port)
"$bin" serve --data "$tmp/ff" --sftp-addr "127.0.0.1:$ff_sftp" --http-addr "127.0.0.1:$ff_http" --sql-addr "" --log-level warn \
	--max-file-size 64GiB --quota 64GiB >"$tmp/ff.out" 2>"$tmp/ff.err" &
pids+=($!)

# OpenSSH: sshd as this user, key only, sftp-server as the subsystem.
mkdir -p "$tmp/openssh" /run/sshd 2>/dev/null || true
ssh-keygen -q -t ed25519 -N '' -f "$tmp/ssh_host_ed25519_key"
cp "$tmp/id.pub" "$tmp/authorized_keys"
os_port=$(free_port)
cat >"$tmp/sshd_config" <<EOF
ListenAddress 127.0.0.1:$os_port
HostKey $tmp/ssh_host_ed25519_key
AuthorizedKeysFile $tmp/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile $tmp/sshd.pid
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
/usr/sbin/sshd -D -e -f "$tmp/sshd_config" 2>"$tmp/sshd.err" &
pids+=($!)

for _ in $(seq 100); do
	if (echo >"/dev/tcp/127.0.0.1/$ff_sftp") 2>/dev/null && (echo >"/dev/tcp/127.0.0.1/$os_port") 2>/dev/null; then break; fi
	sleep 0.1
done

# upload PORT USER DEST: seconds for one put of the file.
upload() {
	echo "put \"$file\" \"$3\"" >"$tmp/batch"
	local start end
	start=$(date +%s.%N)
	sftp "${client[@]}" -P "$1" -b "$tmp/batch" "$2@127.0.0.1" >/dev/null
	end=$(date +%s.%N)
	echo "$end - $start" | bc -l
}

best_ff=0 best_os=0 all_ff=() all_os=()
echo "file: $file ($bytes bytes), cipher $cipher, $runs runs each, alternating"
for run in $(seq "$runs"); do
	# Each upload starts with no dirty pages and no ingest running, so
	# neither server pays for the other's writes.
	sync
	s2=$(upload "$os_port" "$(id -un)" "$tmp/openssh/bench.xml")
	rm -f "$tmp/openssh/bench.xml"
	sync
	s=$(upload "$ff_sftp" bench "bench-$run.xml")
	ff=$(echo "$bytes / $s / 1000000" | bc -l)
	os=$(echo "$bytes / $s2 / 1000000" | bc -l)
	printf 'run %d: flatfiler %.0f MB/s (%.2f s), OpenSSH sftp-server %.0f MB/s (%.2f s)\n' "$run" "$ff" "$s" "$os" "$s2"
	all_ff+=("$ff") all_os+=("$os")
	best_ff=$(echo "if ($ff > $best_ff) $ff else $best_ff" | bc -l)
	best_os=$(echo "if ($os > $best_os) $os else $best_os" | bc -l)
	# The notification must find the MD5 computed on arrival: it answers
	# at once, without reading the file again.
	md5=$(md5sum "$file" | cut -d' ' -f1)
	code=$(curl -s -o "$tmp/notify.json" -w '%{http_code}' -X POST \
		"http://127.0.0.1:$ff_http/api/v2/uploads/received?api_key=$api_key&filenames=bench-$run.xml&hashes=$md5&types=combined")
	[ "$code" = 202 ] || { echo "notification refused: $(cat "$tmp/notify.json")" >&2; exit 1; }
	# The job ingests the file; wait for it, so it takes no CPU from the
	# next uploads.
	for _ in $(seq 600); do
		curl -s "http://127.0.0.1:$ff_http/api/v2/uploads?api_key=$api_key" | grep -q '"status": "\(queued\|processing\)"' || break
		sleep 0.5
	done
	# Then let the server settle: for some seconds after a 1 GiB job the
	# next upload runs at half speed (see README, Performance).
	sleep "${FLATFILER_BENCH_SETTLE:-20}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
med_ff=$(median "${all_ff[@]}") med_os=$(median "${all_os[@]}")
printf 'best:   flatfiler %.0f MB/s, OpenSSH %.0f MB/s, ratio %.2fx (target >= 0.9x)\n' "$best_ff" "$best_os" "$(echo "$best_ff / $best_os" | bc -l)"
printf 'median: flatfiler %.0f MB/s, OpenSSH %.0f MB/s, ratio %.2fx\n' "$med_ff" "$med_os" "$(echo "$med_ff / $med_os" | bc -l)"
