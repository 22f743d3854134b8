#!/usr/bin/env bash
# Scan throughput on a >= 1 GB simulated log, side by side with a parse-only pass over the
# same file, and peak memory. Usage: bench/scan-throughput.sh [DATA_DIR] [ACCOUNTS]
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data}
accounts=${2:-360}
bin=target/release/distillguard
cargo build --release -q -p distillguard
mkdir -p out
log=out/bench-$accounts.jsonl
[ -s "$log" ] || $bin simulate --data-dir "$data" --seed 7 --accounts "$accounts" --out "$log" --labels out/bench-$accounts.labels.jsonl
bytes=$(stat -c %s "$log")
lines=$(wc -l < "$log")
echo "log: $log, $bytes bytes, $lines exchanges, $((bytes / lines)) bytes per exchange"
cat "$log" > /dev/null  # warm the page cache so both passes read from memory
for run in 1 2; do
  /usr/bin/time -f "parse-only: %e s wall, %M KiB peak RSS" $bin bench parse "$log"
  /usr/bin/time -f "scan --json: %e s wall, %M KiB peak RSS" $bin scan --json "$log" > out/bench-verdicts.jsonl
done 2>&1
echo "scan exchanges/s = $lines / scan wall seconds; compare with parse-only above"
