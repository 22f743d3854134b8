#!/usr/bin/env bash
# Scale-out against one embedded node, in one run, in front of the same fast upstream:
#   (a) the upstream directly,
#   (b) one node on the embedded defaults (SQLite log, limits in memory, detection in-process),
#   (c) two replicas on the shared backends (PostgreSQL store, Redis limits, NATS JetStream bus)
#       plus one `distillguard worker`, the load spread round-robin over both replicas.
# The bench account has an rpm limit far above the load so every call pays for its limit check
# (in memory for (b), one Redis script for (c)). Open-loop fixed-rate load (bench load).
# Needs PostgreSQL on 127.0.0.1:5432 and Redis on 6379; NATS is a private nats-server of this
# script (fresh JetStream store). Everything shares this machine's cores with the load generator.
# Usage: bench/scale-out.sh [SECONDS_PER_STEP]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
bin=target/release/distillguard
cargo build --release -q -p distillguard
work=$(mktemp -d)
up=19100; one=19101; r1=19102; r2=19103; nats_port=19104
db=dg_bench_$$
pg_admin=postgres://postgres@127.0.0.1:5432/postgres
pg=postgres://postgres@127.0.0.1:5432/$db
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  sleep 0.5
  psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
psql -q "$pg_admin" -c "CREATE DATABASE $db"
nats-server -a 127.0.0.1 -p $nats_port -js -sd "$work/nats" >/dev/null 2>&1 & pids+=($!)
$bin demo-upstream --listen 127.0.0.1:$up 2>/dev/null & pids+=($!)
limit=(--rpm 100000000)
key_one=$($bin keys create --data "$work/one" --account bench "${limit[@]}" 2>/dev/null | tail -1)
key_shared=$($bin keys create --store "$pg" --account "bench-$$" "${limit[@]}" 2>/dev/null | tail -1)
export DISTILLGUARD_ADMIN_TOKEN=bench RUST_LOG=warn
$bin serve --listen 127.0.0.1:$one --upstream http://127.0.0.1:$up/v1 --data "$work/one" 2>"$work/one.log" & pids+=($!)
for port in $r1 $r2; do
  $bin serve --listen 127.0.0.1:$port --upstream http://127.0.0.1:$up/v1 --data "$work/r$port" \
    --store "$pg" --limits redis://127.0.0.1:6379 --bus nats://127.0.0.1:$nats_port 2>"$work/r$port.log" & pids+=($!)
done
$bin worker --store "$pg" --bus nats://127.0.0.1:$nats_port 2>"$work/worker.log" & pids+=($!)
for port in $one $r1 $r2; do
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
done

chat=/v1/chat/completions
run() {
  case $1 in
    direct) $bin bench load --url http://127.0.0.1:$up$chat --rate "$2" --seconds "$secs" --json;;
    embedded) $bin bench load --url http://127.0.0.1:$one$chat --key "$key_one" --rate "$2" --seconds "$secs" --json;;
    shared) $bin bench load --url http://127.0.0.1:$r1$chat --url http://127.0.0.1:$r2$chat --key "$key_shared" --rate "$2" --seconds "$secs" --json;;
  esac
}
line() {
  python3 - "$@" <<'PY'
import json, sys
t, d, r = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"rate {r['rate']:>5.0f}/s {t:<9} p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  achieved {r['achieved']:6.0f}/s  errors {r['errors']:>4}  added p50 {r['p50_ms']-d['p50_ms']:+6.2f} ms  p99 {r['p99_ms']-d['p99_ms']:+6.2f} ms")
PY
}
sent=0
echo "== latency at fixed rates (${secs} s each); added = target minus direct at the same rate"
for rate in 500 2000; do
  d=$(run direct $rate)
  line direct "$d" "$d"
  for t in embedded shared; do
    r=$(run $t $rate); line $t "$d" "$r"
    [ $t = shared ] && sent=$((sent + $(python3 -c "import json,sys; print(json.loads(sys.argv[1])['ok'])" "$r")))
  done
done
echo "== highest rate with p99 under 10 ms, no errors, >= 95 % of the rate achieved (${secs} s steps)"
for t in embedded shared; do
  best=0
  for rate in 1000 2000 3000 4000 5000 6000 7000 8000 10000; do
    r=$(run $t $rate)
    [ $t = shared ] && sent=$((sent + $(python3 -c "import json,sys; print(json.loads(sys.argv[1])['ok'] + json.loads(sys.argv[1])['errors'])" "$r")))
    ok=$(python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(1 if r['p99_ms'] < 10 and r['errors'] == 0 and r['achieved'] > 0.95*r['rate'] else 0)" "$r")
    echo "  $t $r"
    [ "$ok" = 1 ] && best=$rate || break
  done
  echo "$t sustains $best requests/s with p99 < 10 ms"
done
# The worker must keep up: everything the replicas served ends in PostgreSQL.
for _ in $(seq 120); do
  n=$(psql -tA "$pg" -c "SELECT COUNT(*) FROM exchanges WHERE account = 'bench-$$'")
  [ "$n" -ge "$sent" ] && break
  sleep 1
done
echo "shared: $sent calls answered by the replicas, $n exchanges stored by the worker"
