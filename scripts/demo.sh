#!/usr/bin/env bash
# Runs Redis, the sidecar, the mock provider and Envoy on loopback, shows a request that
# passes, a stream cut at the cap and a request refused before the provider, then stops all.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=.run/demo
ENVOY=${ENVOY_BIN:-.venv/bin/envoy}
REDIS_PORT=6390
SIDECAR=127.0.0.1:8081
PROVIDER=127.0.0.1:8080
ENVOY_URL=http://127.0.0.1:10000
KEY=sk-demo-key
ADMIN_TOKEN=demo-admin-token

rm -rf "$RUN" && mkdir -p "$RUN/redis"
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop_all EXIT

for port in "$REDIS_PORT" 8080 8081 9901 10000; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is in use: stop what listens there and run again" >&2
    exit 1
  fi
done

wait_for() {
  local name=$1 url=$2 log=$3
  for _ in $(seq 1 150); do
    if curl -fs -o /dev/null "$url"; then return 0; fi
    sleep 0.2
  done
  echo "$name did not become ready at $url; last lines of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
}

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
usd() { python3 -c "print(f'\${int(\"$1\")/1e9:.9f}')"; }
budget_state() {
  curl -fs -H "authorization: Bearer $ADMIN_TOKEN" "http://$SIDECAR/admin/budgets/$BUDGET"
}

echo "== starting Redis, the sidecar, the mock provider and Envoy on 127.0.0.1"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$RUN/redis" \
  --appendonly yes --appendfsync everysec --save "" >"$RUN/redis.log" 2>&1 &
pids+=($!)
printf '%s' "$ADMIN_TOKEN" >"$RUN/admin-token"
SPENDFUSE_LISTEN=$SIDECAR SPENDFUSE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
  SPENDFUSE_PRICING=config/pricing.toml SPENDFUSE_ADMIN_TOKEN_FILE="$RUN/admin-token" \
  target/debug/spendfuse-sidecar >"$RUN/sidecar.log" 2>&1 &
pids+=($!)
target/debug/mock-provider --listen "$PROVIDER" >"$RUN/provider.log" 2>&1 &
pids+=($!)
sed -e "s#filename: target/#filename: $PWD/target/#" -e "s#address: 0.0.0.0#address: 127.0.0.1#" envoy/envoy.yaml >"$RUN/envoy.yaml"
"$ENVOY" -c "$RUN/envoy.yaml" --concurrency 2 --log-level warn --base-id 4190 >"$RUN/envoy.log" 2>&1 &
pids+=($!)
wait_for sidecar "http://$SIDECAR/readyz" "$RUN/sidecar.log"
wait_for "mock provider" "http://$PROVIDER/healthz" "$RUN/provider.log"
wait_for Envoy "http://127.0.0.1:9901/ready" "$RUN/envoy.log"

BUDGET=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
echo
echo "== budget for key $KEY is named by its SHA-256: $BUDGET"
curl -fs -X PUT -H "authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' \
  -d '{"limit_usd": "0.001"}' "http://$SIDECAR/admin/budgets/$BUDGET" >/dev/null
echo "limit set to \$0.001"

chat() {
  curl -s -N "$ENVOY_URL/v1/chat/completions" -H "authorization: Bearer $KEY" \
    -H 'content-type: application/json' "$@"
}

echo
echo "== 1. a request the budget can pay for (gpt-4o, max_tokens 20)"
answer=$(chat -d '{"model": "gpt-4o", "max_tokens": 20,
  "messages": [{"role": "user", "content": "Say something short."}]}')
echo "$answer" | json "d['choices'][0]['message']['content']"
echo "$answer" | json "'usage: %d prompt + %d completion tokens' % (d['usage']['prompt_tokens'], d['usage']['completion_tokens'])"
sleep 0.3
spent=$(budget_state | json "d['spent_nano_usd']")
echo "charged: $(usd "$spent")"

echo
echo "== 2. a streamed request with no max_tokens, when the budget has room for about 40 tokens"
# Leave the budget what the prompt and 40 output tokens of gpt-4o cost ($10 per million
# output tokens is 10,000 nano-dollars a token).
limit=$((spent + 440000))
curl -fs -X PUT -H "authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' \
  -d "{\"limit_usd\": \"$(python3 -c "print(f'{$limit/1e9:.9f}')")\"}" \
  "http://$SIDECAR/admin/budgets/$BUDGET" >/dev/null
echo "(the mock provider is told to ignore the output limit, as a misbehaving server would,"
echo " so the filter's meter has to make the cut)"
chat -D "$RUN/headers" -H 'x-mock-ignore-max-tokens: true' -H 'x-mock-output-tokens: 400' \
  -H 'x-mock-chunk-delay-ms: 10' \
  -d '{"model": "gpt-4o", "stream": true,
  "messages": [{"role": "user", "content": "Write a long story."}]}' >"$RUN/stream" || true
grep -i '^x-spendfuse' "$RUN/headers" || true
python3 - "$RUN/stream" <<'PY'
import json, sys
text, events = "", 0
for line in open(sys.argv[1], encoding="utf-8"):
    if not line.startswith("data: ") or line.strip() == "data: [DONE]":
        continue
    event = json.loads(line[6:])
    if "error" in event:
        print(f"received {events} content events: {text.strip()!r}")
        print("final event:", json.dumps(event))
        break
    for choice in event.get("choices", []):
        part = choice.get("delta", {}).get("content")
        if part:
            text += part
            events += 1
PY
sleep 0.3
echo "spent now: $(usd "$(budget_state | json "d['spent_nano_usd']")") of $(usd "$limit")"

echo
echo "== 3. the next request is refused before it reaches the provider"
before=$(curl -fs "http://$PROVIDER/mock/requests" | json "len(d['requests'])")
chat -w '\nHTTP %{http_code}\n' -d '{"model": "gpt-4o", "max_tokens": 20,
  "messages": [{"role": "user", "content": "One more?"}]}'
after=$(curl -fs "http://$PROVIDER/mock/requests" | json "len(d['requests'])")
echo "requests the provider received: $before before, $after after"

echo
echo "== 4. the budget"
budget_state | python3 -m json.tool
echo
echo "== stopping everything the demo started"
