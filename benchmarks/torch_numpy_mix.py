"""pyconv's numpy API next to torch in one process: each pyconv call right after a torch call.

    python benchmarks/torch_numpy_mix.py [--repeats 15]

Runs twice, each in a fresh process: with pyconv.torch's default (pyconv computes on torch's
OpenMP threads) and with PYCONV_TORCH_THREADS=pyconv (pyconv's own pool, whose workers then meet
torch's spinning threads on the same cores). Prints the median ms of the torch conv, the pyconv
conv right after it, and the pyconv conv alone after a pause.
"""
import argparse
import os
import subprocess
import sys

_CHILD = r"""
import statistics, sys, time
import numpy as np, torch, pyconv, pyconv.functional as F
import pyconv.torch  # noqa: F401  (shares torch's threads unless PYCONV_TORCH_THREADS=pyconv)
reps = int(sys.argv[1])
torch.set_num_threads(2); pyconv.set_num_threads(2)
rng = np.random.default_rng(0)
x = rng.standard_normal((8, 1024, 14, 14), dtype=np.float32)
w = rng.standard_normal((512, 1024, 1, 1), dtype=np.float32)
tx, tw = torch.from_numpy(x), torch.from_numpy(w)
F.conv2d(x, w); torch.nn.functional.conv2d(tx, tw)
tt, tp, ta = [], [], []
for _ in range(reps):
    t0 = time.perf_counter(); torch.nn.functional.conv2d(tx, tw)
    t1 = time.perf_counter(); F.conv2d(x, w)
    tt.append(t1 - t0); tp.append(time.perf_counter() - t1)
for _ in range(reps):
    time.sleep(0.05)
    t0 = time.perf_counter(); F.conv2d(x, w); ta.append(time.perf_counter() - t0)
m = lambda v: statistics.median(v) * 1e3
print(f"{m(tt):8.2f} {m(tp):8.2f} {m(ta):8.2f}")
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    print("8x1024x14x14 -> 512 1x1 conv, 2 threads, median ms")
    print(f"{'pyconv threads':16s} {'torch':>8s} {'pyconv':>8s} {'alone':>8s}")
    for mode in ("torch", "pyconv"):
        env = dict(os.environ, PYCONV_TORCH_THREADS=mode)
        r = subprocess.run([sys.executable, "-c", _CHILD, str(args.repeats)], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(r.stderr)
        print(f"{mode:16s} {r.stdout.strip()}")


if __name__ == "__main__":
    main()
