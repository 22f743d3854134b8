#!/usr/bin/env bash
# One command for the live import path: an app instrumented with the official OpenTelemetry
# instrumentation of the `openai` SDK (opentelemetry-instrumentation-openai-v2) calls a model
# server directly, exports its GenAI spans to `distillguard collect`, and distillguard judges
# that traffic with no proxy in the request path. The model server is the stand-in
# (`distillguard demo-upstream`); the app is crates/gateway/tests/sdk/otel_openai.py.
# Installs the pinned Python packages when they are missing (the same pins as .ci/run).
# Usage: scripts/try-collect.sh [CALLS]
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-20}
python3 -c "import opentelemetry.instrumentation.openai_v2, openai" 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check openai \
    opentelemetry-sdk==1.45.2 opentelemetry-exporter-otlp-proto-http==1.45.2 \
    opentelemetry-instrumentation-openai-v2==2.4b0 opentelemetry-util-genai==1.1b0 httpx==0.29.0
cargo build --release -q -p distillguard
bin=target/release/distillguard
work=$(mktemp -d)
token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
$bin demo-upstream --listen 127.0.0.1:19200 2>/dev/null & pids+=($!)
DISTILLGUARD_ADMIN_TOKEN=$token RUST_LOG=warn $bin collect --listen 127.0.0.1:19201 --data "$work" & pids+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:19201/healthz >/dev/null && break; sleep 0.1; done
echo "== the app: $calls chat calls to the model server, traced, spans exported to collect"
DG_MODEL_URL=http://127.0.0.1:19200/v1 DG_TRACES_URL=http://127.0.0.1:19201/v1/traces \
  DG_LOGS_URL=http://127.0.0.1:19201/v1/logs DG_TOKEN=$token DG_CALLS=$calls DG_LOGS_FIRST=1 \
  OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental \
  OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=EVENT_ONLY \
  python3 crates/gateway/tests/sdk/otel_openai.py
sleep 1
echo "== what distillguard logged and concluded (GET /admin/accounts/traced-app)"
curl -sf -H "authorization: Bearer $token" http://127.0.0.1:19201/admin/accounts/traced-app | python3 -m json.tool | head -40
echo "== the last logged exchange (from the span, its text joined from the log events)"
$bin export --data "$work" | tail -1 | python3 -m json.tool | head -40
