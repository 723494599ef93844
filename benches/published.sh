#!/usr/bin/env bash
# The published benchmark: every scenario of BENCHMARKS.md, 3 runs each, server and load
# generator pinned to different cores. Prints one JSON line per run (also kept in
# target/bench-results.jsonl); BENCHMARKS.md quotes the medians.
#   bash benches/published.sh            # ~20 minutes on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin roomcast --bin roomcast-bench
bench=target/release/roomcast-bench
out=target/bench-results.jsonl
: > "$out"
run() {
    local label=$1; shift
    for i in 1 2 3; do
        line=$(taskset -c 1 "$bench" --spawn --server-cpu 0 "$@" 2>/dev/null | tail -n 1)
        echo "{\"label\":\"$label\",\"run\":$i,\"result\":$line}" | tee -a "$out"
    done
}
run chat-saturation           --seconds 10 chat --rooms 1 --members 100 --publishers 10 --payload 64
run chat-saturation-ratelimit --seconds 10 --rate-limit 1000000000 chat --rooms 1 --members 100 --publishers 10 --payload 64
run chat-latency-50k          --seconds 10 chat --rooms 1 --members 100 --publishers 10 --payload 64 --rate 50
run ping-floor                --seconds 10 chat --rooms 1 --members 1 --publishers 1 --payload 64 --rate 50
run vr-500x20-90hz            --seconds 10 --fps 30 vr --headsets 500 --room-size 20 --hz 90
run vr-2000x20-90hz           --seconds 10 --fps 30 vr --headsets 2000 --room-size 20 --hz 90
run vr-1000x20-90hz           --seconds 10 --fps 30 vr --headsets 1000 --room-size 20 --hz 90
run vr-1000x100-90hz          --seconds 10 --fps 30 vr --headsets 1000 --room-size 100 --hz 90
run idle-19000                --seconds 5 idle --connections 19000
# Attacks against the server's default defences, two bystanders chatting beside them (~4 more minutes).
run attack-history            --seconds 10 attack --kind history
run attack-rooms              --seconds 10 attack --kind rooms
run attack-flood              --seconds 10 attack --kind flood
run attack-nested             --seconds 10 attack --kind nested
run attack-transforms         --seconds 10 attack --kind transforms
# The store (issue 13): history written to SQLite, the writer alone, and argon2id logins.
rm -rf target/bench-data; run chat-saturation-persisted --seconds 10 --data-dir target/bench-data chat --rooms 1 --members 100 --publishers 10 --payload 64
rm -rf target/bench-data; run chat-100x2-persisted      --seconds 10 --data-dir target/bench-data chat --rooms 100 --members 2 --publishers 2 --payload 64
run chat-100x2-ephemeral      --seconds 10 chat --rooms 100 --members 2 --publishers 2 --payload 64
run logins-50                 --seconds 10 logins --rate 50
for i in 1 2 3; do
    line=$(taskset -c 1 "$bench" --seconds 10 store 2>/dev/null | tail -n 1)
    echo "{\"label\":\"store-writer\",\"run\":$i,\"result\":$line}" | tee -a "$out"
done
# Several nodes (issue 17): three nodes and their Redis on the server's core.
if command -v redis-server >/dev/null; then
    run chat-saturation-cluster3 --cluster 3 --seconds 10 chat --rooms 1 --members 100 --publishers 10 --payload 64
    run chat-100x2-cluster3      --cluster 3 --seconds 10 chat --rooms 100 --members 2 --publishers 2 --payload 64
    run vr-500x20-cluster3       --cluster 3 --seconds 10 --fps 30 vr --headsets 500 --room-size 20 --hz 90
else
    echo "cluster runs skipped: no redis-server on PATH" >&2
fi
python3 benches/summarize.py "$out"
