#!/usr/bin/env bash
# Same hour, same upstream: another build (OLD) against this one (NEW), in its default
# durability and with --log-durability queued, 2,000/s, two 10 s runs each. Loopback only.
# Usage: OLD=path/to/old/distillguard bench/compare-binaries.sh
set -u
cd "$(dirname "$0")/.."
new=${NEW:-target/release/distillguard}; old=${OLD:?set OLD to the other binary}
work=$(mktemp -d); up=19400; gw=19401
$new demo-upstream --listen 127.0.0.1:$up 2>/dev/null & U=$!
run() { # name bin extra-args
  rm -rf "$work/d"; key=$($2 keys create --data "$work/d" --account b 2>/dev/null | tail -1)
  DISTILLGUARD_ADMIN_TOKEN=x RUST_LOG=error $2 serve --listen 127.0.0.1:$gw --upstream http://127.0.0.1:$up/v1 --data "$work/d" $3 2>/dev/null & G=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$gw/healthz >/dev/null && break; sleep 0.1; done
  for r in 1 2; do echo "$1 run $r: $($new bench load --url http://127.0.0.1:$gw/v1/chat/completions --key "$key" --rate 2000 --seconds 10 --json)"; done
  kill $G; wait $G 2>/dev/null
}
echo "direct: $($new bench load --url http://127.0.0.1:$up/v1/chat/completions --rate 2000 --seconds 10 --json)"
run old $old ""
run committed $new ""
run queued $new "--log-durability queued"
kill $U; rm -rf "$work"
