#!/usr/bin/env bash
# Gateway latency and throughput, one run: a fixed-rate open-loop load (bench load, wrk2-style:
# latency counted from when each request was due) against
#   (a) the upstream directly, (b) distillguard with logging and online detection on,
#   (c) the LiteLLM proxy when `litellm` is installed (pip install 'litellm[proxy]'),
# all in front of the same fast upstream (the demo upstream: a small Rust server).
# Everything runs on this machine, loopback only; the load generator shares the cores.
# Usage: bench/gateway.sh [SECONDS_PER_STEP]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
bin=target/release/distillguard
cargo build --release -q -p distillguard
work=$(mktemp -d)
up_port=19000; gw_port=19001; ll_port=19002
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
$bin demo-upstream --listen 127.0.0.1:$up_port 2>/dev/null & pids+=($!)
key=$($bin keys create --data "$work" --account bench 2>/dev/null | tail -1)
DISTILLGUARD_ADMIN_TOKEN=bench RUST_LOG=warn $bin serve --listen 127.0.0.1:$gw_port --upstream http://127.0.0.1:$up_port/v1 --data "$work" 2>/dev/null & pids+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:$gw_port/healthz >/dev/null && break; sleep 0.1; done

targets="direct distillguard"

url_of() { case $1 in direct) echo http://127.0.0.1:$up_port/v1/chat/completions;; distillguard) echo http://127.0.0.1:$gw_port/v1/chat/completions;; litellm) echo http://127.0.0.1:$ll_port/v1/chat/completions;; esac; }
key_of() { [ "$1" = distillguard ] && echo "$key" || echo ""; }
run() { $bin bench load --url "$(url_of "$1")" --key "$(key_of "$1")" --rate "$2" --seconds "$secs" --json "${@:3}"; }

echo "== latency at fixed rates (${secs} s each); added = target minus direct at the same rate"
for rate in 500 2000; do
  d=$(run direct $rate)
  for t in $targets; do
    [ $t = direct ] && r=$d || r=$(run $t $rate)
    python3 - "$t" "$d" "$r" <<'PY'
import json, sys
t, d, r = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"rate {r['rate']:>5.0f}/s {t:<12} p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms  achieved {r['achieved']:7.0f}/s  errors {r['errors']:>5}  added p50 {r['p50_ms']-d['p50_ms']:+8.2f} ms  p99 {r['p99_ms']-d['p99_ms']:+8.2f} ms")
PY
  done
done

echo "== time to first byte on streamed chat (${secs} s each); added = distillguard minus direct"
for rate in 500 2000; do
  d=$(run direct $rate --stream)
  r=$(run distillguard $rate --stream)
  python3 - "$d" "$r" <<'PY'
import json, sys
d, r = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"rate {r['rate']:>5.0f}/s TTFB direct p50 {d['p50_ms']:.2f} / p99 {d['p99_ms']:.2f} ms, distillguard p50 {r['p50_ms']:.2f} / p99 {r['p99_ms']:.2f} ms, errors {r['errors']}, added p50 {r['p50_ms']-d['p50_ms']:+.2f} ms  p99 {r['p99_ms']-d['p99_ms']:+.2f} ms")
PY
done

echo "== highest rate with p99 under 10 ms, no errors, >= 95 % of the rate achieved (${secs} s steps)"
for t in $targets; do
  best=0
  for rate in 50 100 200 500 1000 2000 3000 4000 6000 8000 10000 12000; do
    r=$(run $t $rate)
    ok=$(python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(1 if r['p99_ms'] < 10 and r['errors'] == 0 and r['achieved'] > 0.95*r['rate'] else 0)" "$r")
    echo "  $t $r"
    [ "$ok" = 1 ] && best=$rate || break
  done
  echo "$t sustains $best requests/s with p99 < 10 ms"
done
if command -v litellm >/dev/null; then
  # LiteLLM last, alone: a backlog it builds up must not slow the other targets' runs.
  cat > "$work/litellm.yaml" <<YAML
model_list:
  - model_name: demo-model
    litellm_params: {model: openai/demo-model, api_base: "http://127.0.0.1:$up_port/v1", api_key: dummy}
YAML
  LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true litellm --config "$work/litellm.yaml" --host 127.0.0.1 --port $ll_port > "$work/litellm.log" 2>&1 & pids+=($!)
  for _ in $(seq 120); do curl -sf http://127.0.0.1:$ll_port/health/liveliness >/dev/null && break; sleep 1; done
  echo "== LiteLLM proxy $(litellm --version 2>/dev/null | tail -1) in front of the same upstream"
  best=0
  for rate in 25 50 100 200; do
    r=$(run litellm $rate)
    echo "  litellm $r"
    ok=$(python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(1 if r['p99_ms'] < 10 and r['errors'] == 0 and r['achieved'] > 0.95*r['rate'] else 0)" "$r")
    [ "$ok" = 1 ] && best=$rate
    python3 -c "import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r['achieved'] > 0.9*r['rate'] else 1)" "$r" || break
  done
  echo "litellm sustains $best requests/s with p99 < 10 ms"
fi
seen=$(curl -s -H "Authorization: Bearer bench" http://127.0.0.1:$gw_port/admin/accounts | python3 -c "import json,sys; print([x for x in json.load(sys.stdin)['accounts'] if x['account']=='bench'][0]['exchanges'])")
echo "exchanges logged and seen by distillguard's detector: $seen"
