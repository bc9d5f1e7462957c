#!/usr/bin/env bash
# Run a command against a fresh rivya-sim on loopback, then stop the simulator.
#   examples/with-sim.sh lua5.4 examples/text_to_video.lua out.mp4
# Exports RIVYA_BASE_URL and RIVYA_API_KEY for the command. Extra simulator
# flags go in RIVYA_SIM_ARGS (e.g. "--task-seconds 2").
set -euo pipefail
sim=${RIVYA_SIM:-$(command -v rivya-sim || echo "$(dirname "$0")/../build/rivya-sim")}
dir=$(mktemp -d)
key="rvya_sk_demo_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
# shellcheck disable=SC2086
"$sim" --port 0 --cdn-port 0 --api-key "$key" --max-lifetime 600 ${RIVYA_SIM_ARGS:-} >"$dir/out" 2>"$dir/log" &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 1 200); do
  grep -q port "$dir/out" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/log" >&2; exit 1; }
  sleep 0.05
done
port=$(sed -E 's/.*"port":([0-9]+).*/\1/' "$dir/out")
echo "rivya-sim listening on 127.0.0.1:$port (pid $pid)"
RIVYA_BASE_URL="http://127.0.0.1:$port" RIVYA_API_KEY="$key" "$@"
