#!/usr/bin/env bash
# The VR scaling series behind the plots in BENCHMARKS.md: server CPU, server-side tick jitter
# and bytes out against headsets, for head-only avatars, heads with two hands, and one big room
# with and without interest management. 3 runs of 10 s per point (~12 minutes on 2 cores);
# RUNS and RUN_SECONDS override that (RUNS=1 RUN_SECONDS=2 for a smoke run). Every run stops by itself.
#   bash benches/vr-scaling.sh                  # writes target/vr-scaling.jsonl and benches/plots/*.svg
#   NOTE="my laptop" bash benches/vr-scaling.sh # a note under each plot's title
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
seconds=${RUN_SECONDS:-10}
cargo build --release --bin roomcast --bin roomcast-bench
bench=target/release/roomcast-bench
out=target/vr-scaling.jsonl
: > "$out"
run() {
    local label=$1; shift
    for i in $(seq 1 "$runs"); do
        line=$(taskset -c 1 "$bench" --spawn --server-cpu 0 --seconds "$seconds" --fps 30 vr --hz 90 "$@" 2>/dev/null | tail -n 1)
        echo "{\"label\":\"$label\",\"run\":$i,\"result\":$line}" | tee -a "$out"
    done
}
for n in 250 500 1000 2000; do
    run "vr-${n}x20-head"  --headsets "$n" --room-size 20
    run "vr-${n}x20-hands" --headsets "$n" --room-size 20 --parts 2
done
for n in 50 100 200; do
    run "vr-1x${n}-all"       --headsets "$n" --room-size "$n"
    run "vr-1x${n}-nearest20" --headsets "$n" --room-size "$n" --interest-nearest 20
done
cargo run --release --manifest-path tools/plots/Cargo.toml -- "$out" benches/plots "${NOTE:-}"
python3 benches/summarize.py "$out"
