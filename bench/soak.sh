#!/usr/bin/env bash
# Durability soak: the gateway is killed with SIGKILL every few seconds under load, then
# restarted on the same store; after each kill, every answer a client received in full (its
# x-request-id, recorded by `bench load --record` as it arrives) must be in the log.
# Loopback only: the demo upstream, the gateway and two load generators (plain and streamed)
# on this machine.
# Usage: bench/soak.sh [SECONDS=300] [KILL_EVERY=5] [RATE=2000] [DURABILITY=committed]
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-300}; every=${2:-5}; rate=${3:-2000}; durability=${4:-committed}
bin=target/release/distillguard
cargo build --release -q -p distillguard
work=$(mktemp -d)
up_port=19100; gw_port=19101
pids=(); gw=""
trap 'kill "${pids[@]}" $gw 2>/dev/null; [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"' EXIT
$bin demo-upstream --listen 127.0.0.1:$up_port 2>/dev/null & pids+=($!)
key=$($bin keys create --data "$work/data" --account soak 2>/dev/null | tail -1)
start_gw() {
  DISTILLGUARD_ADMIN_TOKEN=soak RUST_LOG=error $bin serve --listen 127.0.0.1:$gw_port \
    --upstream http://127.0.0.1:$up_port/v1 --data "$work/data" --log-durability "$durability" 2>>"$work/gw.log" &
  gw=$!
  for _ in $(seq 200); do curl -sf http://127.0.0.1:$gw_port/healthz >/dev/null && return; sleep 0.05; done
  echo "gateway did not come up" >&2; exit 1
}
check() {
  $bin export --data "$work/data" 2>/dev/null > "$work/log.jsonl"
  python3 - "$work/acks.txt" "$work/log.jsonl" "$1" <<'PY'
import json, sys
acks = [l.strip() for l in open(sys.argv[1]) if l.strip()]
logged = set()
for line in open(sys.argv[2]):
    try:
        logged.add(json.loads(line)["id"])
    except Exception:
        pass
missing = [a for a in acks if a not in logged]
print(f"{sys.argv[3]:>8}: acknowledged {len(acks):>8}  logged {len(logged):>8}  missing {len(missing)}" + (f"  e.g. {missing[:3]}" if missing else ""))
sys.exit(1 if missing else 0)
PY
}
touch "$work/acks.txt"
start_gw
url=http://127.0.0.1:$gw_port/v1/chat/completions
# The load keeps going across restarts; refused calls while the gateway is down are errors.
$bin bench load --url $url --key "$key" --rate "$rate" --seconds "$total" --connections 64 --record "$work/acks.txt" --json > "$work/load-plain.json" & pids+=($!)
$bin bench load --url $url --key "$key" --rate $((rate / 4)) --seconds "$total" --connections 32 --stream --record "$work/acks.txt" --json > "$work/load-stream.json" & pids+=($!)
began=$(date +%s); round=0; failed=0
while [ $(( $(date +%s) - began )) -lt "$total" ]; do
  sleep "$every"
  kill -9 $gw; wait $gw 2>/dev/null || true
  round=$((round + 1))
  check "kill $round" || failed=1
  start_gw
done
wait "${pids[1]}" "${pids[2]}" || true
kill -TERM $gw; wait $gw 2>/dev/null || true; gw=""
check "final" || failed=1
echo "load (plain):  $(cat "$work/load-plain.json")"
echo "load (stream): $(cat "$work/load-stream.json")"
echo "kills: $round, durability: $durability, result: $([ $failed = 0 ] && echo 'acknowledged = logged after every kill' || echo 'LOST EXCHANGES')"
exit $failed
