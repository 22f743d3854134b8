#!/usr/bin/env bash
# CPU time the gateway spends per request, by thread, at a fixed rate: a steadier figure than
# the highest sustained rate on a shared machine. Runs the demo upstream and the gateway
# (embedded store, online detection), drives `bench load` at RATE for SECONDS, and reads each
# thread's user and system time from /proc before and after.
# Usage: bench/gateway-cpu.sh [RATE] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-3000}; secs=${2:-8}
bin=target/release/distillguard
cargo build --release -q -p distillguard
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
$bin demo-upstream --listen 127.0.0.1:19000 2>/dev/null & pids+=($!)
key=$($bin keys create --data "$work" --account bench 2>/dev/null | tail -1)
DISTILLGUARD_ADMIN_TOKEN=bench RUST_LOG=warn $bin serve --listen 127.0.0.1:19001 --upstream http://127.0.0.1:19000/v1 --data "$work" 2>/dev/null & gw=$!; pids+=($gw)
for _ in $(seq 100); do curl -sf http://127.0.0.1:19001/healthz >/dev/null && break; sleep 0.1; done
url=http://127.0.0.1:19001/v1/chat/completions
$bin bench load --url $url --key "$key" --rate 500 --seconds 2 --json > /dev/null  # warm up
# Clock ticks (1/100 s) of user and system time per thread name.
snap() {
  for t in /proc/$gw/task/*; do
    n=$(cat "$t/comm"); set -- $(cut -d' ' -f14,15 "$t/stat")
    echo "$n-user $1"; echo "$n-sys $2"
  done | awk '{a[$1]+=$2} END {for (k in a) print k, a[k]}' | sort
}
snap > "$work/before"
r=$($bin bench load --url $url --key "$key" --rate "$rate" --seconds "$secs" --json)
snap > "$work/after"
echo "$r"
n=$(echo "$r" | python3 -c "import json,sys; print(json.load(sys.stdin)['ok'])")
join -a2 "$work/before" "$work/after" | awk -v n="$n" '{b=(NF==3)?$2:0; d=$NF-b; tot+=d; if (d > 0) printf "%-22s %6.1f us/request\n", $1, d*10000/n} END {printf "%-22s %6.1f us/request\n", "total", tot*10000/n}'
