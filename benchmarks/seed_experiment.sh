#!/usr/bin/env bash
# The seed's load test scaled to this machine, and the overload run (docs/benchmarks.md).
# Each starts its own shoal server on loopback, lets `shoal bench` deploy every configuration, and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
run() {  # run PORT SERVER_ARGS... -- BENCH_ARGS...
  local port=$1; shift
  local server_args=() ; while [[ $1 != -- ]]; do server_args+=("$1"); shift; done; shift
  local state; state=$(mktemp -d)
  shoal server --port "$port" --state-dir "$state" --log-level warning "${server_args[@]}" &
  local pid=$!
  trap 'kill $pid 2>/dev/null || true' RETURN
  until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do sleep 0.2; done
  shoal bench --url "http://127.0.0.1:$port" --deploy gemma-3-270m "$@"
}
run 8200 -- \
  --config "1 copy x 2 cores:copies=1,cpus=2" --config "2 copies x 1 core:copies=2,cpus=1" \
  --vus 1,2,4,8,16,32 --duration 60 --prompt-tokens 256 --max-new-tokens 32 --out docs/results/seed
run 8300 --max-queue 4 --queue-timeout 10 -- \
  --config "2 copies x 1 core, 2 slots each:copies=2,cpus=1,env.MAX_CONCURRENT_REQUESTS=2" \
  --vus 4,8,32 --duration 20 --prompt-tokens 256 --max-new-tokens 32 --out docs/results/overload
