#!/usr/bin/env bash
# What `log_durability = committed` costs against `queued`: latency at 2,000 requests/s
# (plain and streamed) and the highest rate with p99 under 10 ms, each mode on a fresh store,
# the same demo upstream, loopback only. The load generator shares the two cores.
# Usage: bench/durability.sh [SECONDS_PER_STEP=10]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
bin=target/release/distillguard
cargo build --release -q -p distillguard
work=$(mktemp -d)
up_port=19300; gw_port=19301
pids=(); gw=""
trap 'kill "${pids[@]}" $gw 2>/dev/null; rm -rf "$work"' EXIT
$bin demo-upstream --listen 127.0.0.1:$up_port 2>/dev/null & pids+=($!)
url=http://127.0.0.1:$gw_port/v1/chat/completions
cat > "$work/fmt.py" <<'PY'
import json, sys
mode, rate, kind, r = sys.argv[1], float(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
print(f"{mode:<9} {rate:>6.0f}/s {kind:<8} p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  achieved {r['achieved']:6.0f}/s  errors {r['errors']}")
ok = r["p99_ms"] < 10 and r["errors"] == 0 and r["achieved"] >= 0.95 * rate
sys.exit(0 if ok else 3)
PY
for mode in committed queued; do
  rm -rf "$work/data"
  key=$($bin keys create --data "$work/data" --account bench 2>/dev/null | tail -1)
  DISTILLGUARD_ADMIN_TOKEN=bench RUST_LOG=error $bin serve --listen 127.0.0.1:$gw_port \
    --upstream http://127.0.0.1:$up_port/v1 --data "$work/data" --log-durability $mode 2>/dev/null &
  gw=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$gw_port/healthz >/dev/null && break; sleep 0.1; done
  for stream in "" --stream; do
    r=$($bin bench load --url $url --key "$key" --rate 2000 --seconds "$secs" --json $stream)
    python3 "$work/fmt.py" $mode 2000 "${stream:-plain}" "$r" || true
  done
  best=none
  for rate in 4000 6000 8000 10000 12000; do
    r=$($bin bench load --url $url --key "$key" --rate $rate --seconds "$secs" --json)
    if python3 "$work/fmt.py" $mode $rate plain "$r"; then best=$rate; else break; fi
  done
  echo "$mode: highest rate with p99 < 10 ms, no errors, >= 95 % achieved: $best/s"
  kill $gw; wait $gw 2>/dev/null || true; gw=""
done
