"""Markdown table of a `compare.py --json` file, for benchmarks/RESULTS.md.

    python benchmarks/results_table.py benchmarks/results.json [--algo auto]

Prints one row per case and direction for the chosen conv algorithm (and every pooling row):
ms, rate, % of the FMA peak (conv), torch ms and ratio; then the geometric means of the ratio per
op, direction and algorithm over all algorithms in the file, and the cases below 0.9x.
"""
import argparse
import json
import math
from collections import defaultdict


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--algo", default="auto", help="conv algorithm to tabulate (default: auto)")
    ap.add_argument("--peak", type=float, default=380.0,
                    help="FMA peak in GFLOP/s for the thread count of the run (default: 380, 2 cores)")
    args = ap.parse_args()
    with open(args.json) as f:
        data = json.load(f)
    rows = data["rows"]
    print("| case | dir | algo | ms | rate | % peak | torch ms | ratio |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        conv = r["op"] == "conv2d"
        if conv and r["algo"] != args.algo:
            continue
        if conv:
            rate, peak = f"{r['gflops']:.1f} GF/s", f"{100 * r['gflops'] / args.peak:.0f}"
        else:
            rate, peak = f"{r.get('gbps', float('nan')):.1f} GB/s", "-"
        print(f"| {r['case']} | {r['direction']} | {r['algo']} | {r['ms']:.3f} | {rate} | {peak} | "
              f"{r['torch_ms']:.3f} | {r['ratio']:.2f} |")
    groups = defaultdict(list)
    for r in rows:
        groups[(r["op"], r["direction"], r["algo"])].append(r["ratio"])
    print("\n```\ngeometric mean of torch time / pyconv time:")
    for (op, d, a), v in sorted(groups.items()):
        print(f"  {op:11s} {d:10s} {a:8s} {math.exp(sum(map(math.log, v)) / len(v)):5.2f}  ({len(v)} cases)")
    low = [r for r in rows if r["ratio"] < 0.9 and (r["op"] != "conv2d" or r["algo"] == args.algo)]
    print(f"cases below 0.9x ({args.algo} and pooling): " +
          (", ".join(f"{r['case']} {r['direction']} {r['ratio']:.2f}" for r in low) or "none"))
    print("```")


if __name__ == "__main__":
    main()
