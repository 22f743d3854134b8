#!/usr/bin/env bash
# Scan throughput on a >= 1 GB simulated log, side by side with a parse-only pass over the
# same file (alternating runs; this machine's timings are noisy, so medians are reported),
# and peak memory. Usage: bench/scan-throughput.sh [DATA_DIR] [ACCOUNTS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data}
accounts=${2:-380}
runs=${3:-5}
bin=target/release/distillguard
cargo build --release -q -p distillguard
mkdir -p out
log=out/bench-$accounts.jsonl
[ -s "$log" ] || $bin simulate --data-dir "$data" --seed 7 --accounts "$accounts" --out "$log" --labels "out/bench-$accounts.labels.jsonl"
bytes=$(stat -c %s "$log")
lines=$(wc -l < "$log")
echo "log: $log, $bytes bytes, $lines exchanges, $((bytes / lines)) bytes per exchange"
cat "$log" > /dev/null  # warm the page cache so both passes read from memory
times=$(mktemp)
for _ in $(seq "$runs"); do
  /usr/bin/time -f "parse %e %M" -a -o "$times" $bin bench parse "$log" > /dev/null
  /usr/bin/time -f "scan %e %M" -a -o "$times" $bin scan --json "$log" > /dev/null 2>&1
done
median() { grep "^$1 " "$times" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
peak() { grep "^$1 " "$times" | awk '{print $3}' | sort -n | tail -1; }
p=$(median parse); s=$(median scan)
echo "runs (seconds): $(grep -c . "$times") timings: $(awk '{printf "%s=%s ", $1, $2}' "$times")"
awk -v n="$lines" -v b="$bytes" -v p="$p" -v s="$s" -v pm="$(peak parse)" -v sm="$(peak scan)" 'BEGIN {
  printf "parse-only: median %.2f s = %.0f exchanges/s, %.0f MB/s, peak RSS %.0f MiB\n", p, n/p, b/p/1e6, pm/1024
  printf "scan --json: median %.2f s = %.0f exchanges/s, %.0f MB/s, peak RSS %.0f MiB\n", s, n/s, b/s/1e6, sm/1024
  printf "scan speed / parse-only speed = %.0f%%\n", 100*p/s
}'
rm -f "$times"
