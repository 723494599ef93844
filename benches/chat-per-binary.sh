#!/usr/bin/env bash
# Chat saturation (1 room x 100 members, 10 publishers, 64 B) against several server
# binaries, 3 rounds interleaved: delivered events per server CPU-second, the server's CPU read
# from /proc. Each binary is started on CPU 0 and driven with --addr by this tree's generator
# on CPU 1, so older builds (without --spawn support for new flags) compare fairly.
#   bash benches/chat-per-binary.sh OLD/target/release/roomcast target/release/roomcast
set -euo pipefail
cd "$(dirname "$0")/.."
bench=target/release/roomcast-bench
port=${PORT:-7783}
for round in 1 2 3; do
  for exe in "$@"; do
    extra=""
    "$exe" --help 2>/dev/null | grep -q -- "--ephemeral" && extra="$extra --ephemeral"
    "$exe" --help 2>/dev/null | grep -q -- "--max-conns-per-ip" && extra="$extra --max-conns-per-ip 0"
    # shellcheck disable=SC2086
    taskset -c 0 "$exe" --port "$port" $extra --fps 30 --rate-limit 0 --max-clients 200 \
        --max-room-members 200 --log-level warn 2>/dev/null &
    pid=$!
    sleep 0.5
    t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
    result=$(taskset -c 1 "$bench" --addr "127.0.0.1:$port" --seconds 10 chat 2>/dev/null | tail -n 1)
    t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$result" | python3 -c "
import json, sys
d = json.load(sys.stdin); cpu = ($t1 - $t0) / 100
print('$exe', 'round', $round, 'cpu_s', cpu, 'M_events_per_cpu_s', round(d['delivered_events'] / cpu / 1e6, 2))"
  done
done
