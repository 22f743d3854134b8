#!/usr/bin/env bash
# Gateway latency and throughput, one run: a fixed-rate open-loop load (bench load, wrk2-style:
# latency counted from when each request was due) against
#   (a) the upstream directly, (b) distillguard with logging and online detection on,
# both in front of the same fast upstream (the demo upstream: a small Rust server).
# Everything runs on this machine, loopback only; the load generator shares the 2 cores.
# Usage: bench/gateway.sh [SECONDS_PER_STEP]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
bin=target/release/distillguard
cargo build --release -q -p distillguard
work=$(mktemp -d)
up_port=19000; gw_port=19001
$bin demo-upstream --listen 127.0.0.1:$up_port 2>/dev/null & up_pid=$!
key=$($bin keys create --data "$work" --account bench 2>/dev/null | tail -1)
DISTILLGUARD_ADMIN_TOKEN=bench RUST_LOG=warn $bin serve --listen 127.0.0.1:$gw_port --upstream http://127.0.0.1:$up_port/v1 --data "$work" 2>/dev/null & gw_pid=$!
trap 'kill $up_pid $gw_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:$gw_port/healthz >/dev/null && break; sleep 0.1; done

direct=http://127.0.0.1:$up_port/v1/chat/completions
gateway=http://127.0.0.1:$gw_port/v1/chat/completions
run() { $bin bench load --url "$1" --key "$2" --rate "$3" --seconds "$secs" --json; }

echo "== added latency at fixed rates (${secs} s each)"
for rate in 500 2000; do
  d=$(run $direct "" $rate); g=$(run $gateway "$key" $rate)
  python3 - "$d" "$g" <<'PY'
import json, sys
d, g = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"rate {d['rate']:.0f}/s  direct p50 {d['p50_ms']:.2f} ms p99 {d['p99_ms']:.2f} ms | distillguard p50 {g['p50_ms']:.2f} ms p99 {g['p99_ms']:.2f} ms (errors {g['errors']}) | added p50 {g['p50_ms']-d['p50_ms']:+.2f} ms p99 {g['p99_ms']-d['p99_ms']:+.2f} ms")
PY
done

echo "== highest rate with p99 under 10 ms (${secs} s steps)"
for target in direct gateway; do
  url=$direct; k=""
  [ $target = gateway ] && url=$gateway && k=$key
  best=0
  for rate in 1000 2000 3000 4000 6000 8000 10000 12000; do
    r=$(run $url "$k" $rate)
    ok=$(python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(1 if r['p99_ms'] < 10 and r['errors'] == 0 and r['achieved'] > 0.95*r['rate'] else 0)" "$r")
    echo "  $target $r"
    [ "$ok" = 1 ] && best=$rate || break
  done
  echo "$target sustains $best requests/s with p99 < 10 ms"
done
logged=$(curl -s -H "Authorization: Bearer bench" http://127.0.0.1:$gw_port/admin/accounts | python3 -c "import json,sys; a=[x for x in json.load(sys.stdin)['accounts'] if x['account']=='bench'][0]; print(a['exchanges'])")
echo "exchanges seen by the gateway's detector: $logged"
