"""ONNX models on pyconv vs onnxruntime vs OpenVINO: ResNet-18, MobileNetV2, SqueezeNet 1.1 and
VGG-11 exported from torch (opset 17, free batch size), batch 1 and 8, each engine in its own
process with the same thread count (onnxruntime: intra-op threads; OpenVINO: the f32 precision
hint and a latency hint). Rounds alternate the engines, so that a machine whose load changes
hurts all of them alike; the median over rounds of each engine's median is reported.

    python benchmarks/onnx_models.py [--models resnet18 ...] [--batch 1 8] [--threads 2] [--rounds 3]
                                     [--json out.json] [--profile]

Also reports pyconv's load + optimise time per model (in a fresh process, after the imports) and,
with --profile, pyconv's time per op type (what the missing fused/blocked C++ path would take).
"""
import argparse
import json
import os
import pathlib
import sys
import tempfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MODELS = ["resnet18", "mobilenet_v2", "squeezenet1_1", "vgg11"]
ENGINES = ["pyconv", "onnxruntime", "openvino"]


def export(name, folder):
    """The model's .onnx file (torch's TorchScript exporter, opset 17), written once."""
    path = pathlib.Path(folder) / f"{name}.onnx"
    if path.exists():
        return path
    import torch
    from torch_models import MODELS as ZOO

    torch.manual_seed(0)
    model = ZOO[name]().eval()
    tmp = path.with_suffix(".tmp")
    torch.onnx.export(model, torch.zeros(1, 3, 224, 224), str(tmp), opset_version=17, dynamo=False,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    os.replace(tmp, path)
    return path


def profile(path, batch, threads):
    """pyconv's share of time per op type and the costliest convs (in this process)."""
    import pyconv
    import pyconv.onnx as pox

    pyconv.set_num_threads(threads)
    model = pox.load(path)
    plan = model.plan(batch)
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    secs = plan.profile([x], repeats=5)
    rows = plan.rows()
    by = {}
    for r, t in zip(rows, secs):
        key = r["op"] if r["op"] != "Conv" else f"Conv {r['algorithm']}" + (" grouped" if r["groups"] > 1 else "")
        by[key] = by.get(key, 0.0) + t
    top = [dict(name=rows[k]["name"], op=rows[k]["op"], algorithm=rows[k]["algorithm"], output=rows[k]["output"],
                ms=1e3 * secs[k], gflops=rows[k]["flops"] / secs[k] / 1e9) for k in np.argsort(-secs)[:8]]
    return {"total_ms": 1e3 * float(secs.sum()), "by_op_ms": {k: 1e3 * v for k, v in by.items()}, "top": top}


def main(argv=None):
    from pyconv.cli_onnx import _available, time_in_subprocess

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    p.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10, help="timed runs per engine per round")
    p.add_argument("--engines", nargs="+", default=ENGINES, choices=ENGINES)
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "pyconv-onnx-models"))
    p.add_argument("--json")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    engines = [e for e in args.engines if _available(e)]
    results = []
    for name in args.models:
        path = export(name, args.dir)
        for batch in args.batch:
            per = {e: [] for e in engines}
            load = []
            for r in range(args.rounds):
                order = engines[r % len(engines):] + engines[: r % len(engines)]
                for e in order:
                    res = time_in_subprocess(e, path, batch, args.repeats, args.threads)
                    per[e].append(res["ms"])
                    if e == "pyconv":
                        load.append(res["load_s"])
            row = {"model": name, "batch": batch, **{e: float(np.median(v)) for e, v in per.items()},
                   "pyconv_load_s": float(np.median(load)) if load else None, "rounds": per}
            results.append(row)
            cells = "  ".join(f"{e} {row[e]:8.2f} ms" for e in engines)
            ratio = f"  onnxruntime/pyconv {row['onnxruntime'] / row['pyconv']:.2f}x" if "onnxruntime" in row else ""
            print(f"{name:<14} b{batch:<2} {cells}{ratio}  (pyconv load {row['pyconv_load_s']:.2f} s)", flush=True)
    if args.profile:
        for name in args.models:
            for batch in args.batch:
                prof = profile(export(name, args.dir), batch, args.threads)
                shares = ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(prof["by_op_ms"].items(), key=lambda kv: -kv[1]))
                print(f"\n{name} b{batch}: pyconv {prof['total_ms']:.1f} ms = {shares}")
                for t in prof["top"]:
                    print(f"   {t['ms']:7.2f} ms {t['gflops']:6.1f} GFLOP/s {t['algorithm']:<8} "
                          f"{'x'.join(map(str, t['output'])):<14} {t['name']}")
                results.append({"profile": name, "batch": batch, **prof})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "rounds": args.rounds, "results": results}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
