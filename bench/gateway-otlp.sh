#!/usr/bin/env bash
# What exporting every proxied call as an OpenTelemetry span costs the calls: the same
# fixed-rate open-loop load (bench load, latency counted from when each request was due)
# against the upstream directly, the gateway without `[otlp]`, and the gateway with it,
# exporting to a collector that answers at once (a small Python OTLP/HTTP sink, so the
# figure is the gateway's cost, not a collector's). Alternates the three, ROUNDS times.
# Usage: bench/gateway-otlp.sh [SECONDS_PER_RUN] [RATE] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}; rate=${2:-2000}; rounds=${3:-2}
bin=target/release/distillguard
cargo build --release -q -p distillguard
work=$(mktemp -d)
up=19100; plain=19101; traced=19102; sink=19103
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
$bin demo-upstream --listen 127.0.0.1:$up 2>/dev/null & pids+=($!)
python3 - "$sink" <<'PY' & pids+=($!)
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
for g in plain traced; do
  mkdir -p "$work/$g"
  key=$($bin keys create --data "$work/$g" --account bench 2>/dev/null | tail -1)
  echo "$key" > "$work/$g.key"
done
printf '[otlp]\nendpoint = "http://127.0.0.1:%s/v1/traces"\n' $sink > "$work/traced.toml"
: > "$work/plain.toml"
for g in plain traced; do
  port=$([ $g = plain ] && echo $plain || echo $traced)
  DISTILLGUARD_ADMIN_TOKEN=bench RUST_LOG=warn $bin serve --listen 127.0.0.1:$port \
    --upstream http://127.0.0.1:$up/v1 --data "$work/$g" --config "$work/$g.toml" 2>/dev/null & pids+=($!)
done
for port in $plain $traced; do
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
done
run() { $bin bench load --url "http://127.0.0.1:$1/v1/chat/completions" --key "$2" --rate "$rate" --seconds "$secs" --json; }
echo "== ${rate}/s, ${secs} s a run, ${rounds} rounds: direct, without [otlp], with [otlp]"
for round in $(seq "$rounds"); do
  d=$(run $up "")
  p=$(run $plain "$(cat "$work/plain.key")")
  t=$(run $traced "$(cat "$work/traced.key")")
  python3 - "$round" "$d" "$p" "$t" <<'PY'
import json, sys
n, d, p, t = sys.argv[1], *(json.loads(a) for a in sys.argv[2:])
for name, r in (("direct", d), ("without", p), ("with", t)):
    print(f"round {n} {name:<8} p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  achieved {r['achieved']:6.0f}/s  errors {r['errors']}")
print(f"round {n} added by the gateway p99: without {p['p99_ms']-d['p99_ms']:+.2f} ms, with {t['p99_ms']-d['p99_ms']:+.2f} ms; tracing itself {t['p99_ms']-p['p99_ms']:+.2f} ms")
PY
done
curl -s -H "authorization: Bearer bench" http://127.0.0.1:$traced/metrics | grep '^distillguard_otlp_spans_total' || true
