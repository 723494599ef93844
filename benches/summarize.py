"""Medians of the runs in target/bench-results.jsonl, one table row per label and figure.

    python3 benches/summarize.py [target/bench-results.jsonl]
"""
import json
import statistics
import sys
from collections import defaultdict

path = sys.argv[1] if len(sys.argv) > 1 else "target/bench-results.jsonl"
runs = defaultdict(list)
with open(path) as f:
    for line in f:
        row = json.loads(line)
        runs[row["label"]].append(row["result"])


def flat(result, prefix=""):
    for key, value in result.items():
        if isinstance(value, dict):
            yield from flat(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and key not in ("seconds", "fps"):
            yield f"{prefix}{key}", value


for label, results in runs.items():
    print(f"\n{label} ({len(results)} runs): median [min - max]")
    figures = defaultdict(list)
    for result in results:
        for key, value in flat(result):
            figures[key].append(value)
    for key, values in figures.items():
        print(f"  {key:<36} {statistics.median(values):>16,.3f}  [{min(values):,.3f} - {max(values):,.3f}]")
