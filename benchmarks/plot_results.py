"""Plot benchmarks/results.json (from compare.py --json): GFLOP/s per conv case and direction,
pyconv ("auto", or the algorithm given) next to torch; pooling in GB/s.

    python benchmarks/plot_results.py benchmarks/results.json benchmarks/results.png [--algo auto]

Needs matplotlib (not a pyconv dependency).
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("png")
    ap.add_argument("--algo", default="auto")
    args = ap.parse_args()
    rows = json.load(open(args.json))["rows"]
    conv = [r for r in rows if r["op"] == "conv2d" and r["algo"] == args.algo]
    pool = [r for r in rows if r["op"] != "conv2d"]
    dirs = ["fwd", "bwd_data", "bwd_weight"]
    cases = list(dict.fromkeys(r["case"] for r in conv))
    fig, axes = plt.subplots(len(dirs) + 1, 1, figsize=(15, 18))
    for ax, d in zip(axes, dirs):
        sel = {r["case"]: r for r in conv if r["direction"] == d}
        x = np.arange(len(cases))
        py = [sel[c]["gflops"] if c in sel else 0 for c in cases]
        tt = [sel[c]["gflops"] / sel[c]["ratio"] if c in sel and "ratio" in sel[c] else 0 for c in cases]
        ax.bar(x - 0.2, py, 0.4, label=f"pyconv ({args.algo})")
        ax.bar(x + 0.2, tt, 0.4, label="torch")
        ax.set_xticks(x)
        ax.set_xticklabels(cases, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("GFLOP/s")
        ax.set_yscale("log")
        ax.set_title(f"conv2d {d}, 2 threads, float32")
        ax.legend()
    ax = axes[-1]
    labels = [f"{r['case']} {r['direction']}" for r in pool]
    x = np.arange(len(pool))
    ax.bar(x - 0.2, [r["gbps"] for r in pool], 0.4, label="pyconv")
    ax.bar(x + 0.2, [r["gbps"] / r["ratio"] if "ratio" in r else 0 for r in pool], 0.4, label="torch")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("GB/s")
    ax.set_title("pooling (NCHW), 2 threads, float32")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.png, dpi=90)


if __name__ == "__main__":
    main()
