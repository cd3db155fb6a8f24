# Sourced by the benchmark scripts that talk to AWS APIs: starts moto's server and, in front of
# it, the tests' recording proxy (tests/support/fault_proxy.py) on free loopback ports, stops
# both when the script exits, and points the AWS SDKs and CLIs at the proxy.
#
#   source bench/moto.sh; start_moto OUT_DIR [LATENCY_MS]
#
# Sets MOTO_PORT, PROXY_PORT and PROXY (the proxy's URL; its control endpoints are under
# $PROXY/_proxy/). LATENCY_MS holds every request that long before it is forwarded (a round
# trip to a region). Needs the test venv (./scripts/setup-test-env).
start_moto() {
  local out=$1 latency=${2:-0}
  if [ ! -x .venv/bin/moto_server ]; then
    echo "error: .venv has no moto server; run ./scripts/setup-test-env first" >&2
    exit 1
  fi
  local free_port='import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
  MOTO_PORT=$(.venv/bin/python -c "$free_port")
  PROXY_PORT=$(.venv/bin/python -c "$free_port")
  .venv/bin/moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$out/moto.log" 2>&1 &
  MOTO_PID=$!
  .venv/bin/python tests/support/fault_proxy.py --port "$PROXY_PORT" --upstream "http://127.0.0.1:$MOTO_PORT" \
    --latency-ms "$latency" >"$out/proxy.log" 2>&1 &
  PROXY_PID=$!
  trap 'kill $MOTO_PID $PROXY_PID 2>/dev/null || true' EXIT
  PROXY=http://127.0.0.1:$PROXY_PORT
  for _ in $(seq 100); do
    curl -sf "$PROXY/_proxy/stats" >/dev/null 2>&1 && curl -sf "http://127.0.0.1:$MOTO_PORT/" >/dev/null 2>&1 && break
    sleep 0.2
  done
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
    AWS_EC2_METADATA_DISABLED=true AWS_ENDPOINT_URL=$PROXY
  unset AWS_PROFILE
}
