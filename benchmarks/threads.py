"""Threads in crowded processes and on a shared machine (issue 11's targets).

    python benchmarks/threads.py [--section step train pair torch busy] [--repeats 7]

Sections, each printing medians over repeats and the ratio that matters:
  step   a LeNet-sized training step (conv 1->16 and 16->32 3x3 on 8x8, Linear 512->128->10,
         batch 128) and the digits-cnn step (batch 32): default threads vs 1 thread, interleaved
         in one process, numpy's BLAS left at its default.
  train  `pyconv train --epochs 3` (digits) as a whole process: default threads vs --threads 1.
  pair   two `pyconv train --epochs 3` started together, 5 times: each pair's wall time vs one
         run alone.
  torch  a Linear-heavy pyconv step with a torch conv + matmul between steps, vs the same step in
         a process without torch (each in its own process).
  busy   `pyconv train --epochs 3` while two other processes keep both cores busy (a shared VM):
         default threads vs --threads 1.
The kernel suite's thread scaling is `benchmarks/compare.py --suite all --threads 1/2`.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def lenet_step_model():
    from pyconv import nn

    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, 10))


def linear_heavy_model():
    from pyconv import nn

    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(16 * 16 * 16, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))


def make_step(model, x, y):
    import pyconv
    from pyconv import nn, optim

    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        loss = loss_fn(model(pyconv.Tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def section_step(args):
    import pyconv
    from pyconv import models

    default = pyconv.get_num_threads()
    rng = np.random.default_rng(0)
    nets = [("lenet-sized b128", lenet_step_model, (1, 8, 8), 128),
            ("digits-cnn b32", lambda: models.build_model("digits-cnn", (1, 8, 8), 10), (1, 8, 8), 32)]
    for name, build, shape, batch in nets:
        pyconv.manual_seed(0)
        x = rng.random((batch,) + shape, dtype=np.float32)
        y = rng.integers(0, 10, batch)
        step = make_step(build(), x, y)
        times = {default: [], 1: []}
        for _ in range(30):
            step()
        for _ in range(args.repeats):
            for n in times:
                pyconv.set_num_threads(n)
                t0 = time.perf_counter()
                for _ in range(20):
                    step()
                times[n].append((time.perf_counter() - t0) / 20)
        pyconv.set_num_threads(default)
        d, one = np.median(times[default]), np.median(times[1])
        print(f"step  {name:18s} {default} threads {d * 1e3:7.3f} ms   1 thread {one * 1e3:7.3f} ms   "
              f"1-thread / default {one / d:5.2f}", flush=True)


def train_cmd(out, *extra):
    return [sys.executable, "-m", "pyconv", "train", "--epochs", "3", "--out", out, *extra]


def run_timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def section_train(args):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "run")
        run_timed(train_cmd(out))  # warm-up: page cache, matplotlib's font cache
        times = {"default": [], "1": []}
        for _ in range(args.repeats):
            times["default"].append(run_timed(train_cmd(out)))
            times["1"].append(run_timed(train_cmd(out, "--threads", "1")))
    d, one = np.median(times["default"]), np.median(times["1"])
    print(f"train digits --epochs 3: default {d:6.2f} s   --threads 1 {one:6.2f} s   1-thread / default {one / d:5.2f}"
          f"   (min-max default {min(times['default']):.2f}-{max(times['default']):.2f} s)", flush=True)


def section_pair(args):
    with tempfile.TemporaryDirectory() as tmp:
        alone = [run_timed(train_cmd(os.path.join(tmp, "a"))) for _ in range(3)]
        alone_med = float(np.median(alone))
        pairs = []
        for i in range(5):
            t0 = time.perf_counter()
            procs = [subprocess.Popen(train_cmd(os.path.join(tmp, f"p{i}{j}")), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL) for j in range(2)]
            for p in procs:
                if p.wait() != 0:
                    raise SystemExit("a pyconv train of the pair failed")
            pairs.append(time.perf_counter() - t0)
    print(f"pair  one run alone {alone_med:6.2f} s; pairs {', '.join(f'{p:.2f}' for p in pairs)} s; "
          f"slowest pair / alone {max(pairs) / alone_med:5.2f}", flush=True)


def section_busy(args):
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.5)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "run")
            times = {"default": [], "1": []}
            for _ in range(max(1, args.repeats // 2)):
                times["default"].append(run_timed(train_cmd(out)))
                times["1"].append(run_timed(train_cmd(out, "--threads", "1")))
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    d, one = np.median(times["default"]), np.median(times["1"])
    print(f"busy  train digits --epochs 3 beside 2 busy processes: default {d:6.2f} s   --threads 1 {one:6.2f} s   "
          f"default / 1-thread {d / one:5.2f}", flush=True)


def torch_child(mode, repeats):
    """Runs in a child process; prints the median pyconv step time and torch calls time in ms.
    mode 0: pyconv steps alone (no torch imported); 1: pyconv steps with torch calls between;
    2: torch calls alone (no pyconv steps between)."""
    import pyconv

    step_times, torch_times = [], []
    if mode in (1, 2):
        import torch

        tx = torch.randn(32, 16, 32, 32)
        tw = torch.randn(32, 16, 3, 3)
        ta, tb = torch.randn(256, 512), torch.randn(512, 256)

        def between():
            t0 = time.perf_counter()
            torch.nn.functional.conv2d(tx, tw, padding=1)
            torch.mm(ta, tb)
            torch_times.append(time.perf_counter() - t0)
    else:
        def between():
            pass

    rng = np.random.default_rng(0)
    pyconv.manual_seed(0)
    x = rng.random((64, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    step = make_step(linear_heavy_model(), x, y)
    for i in range(10 + repeats * 10):
        if i == 10:
            step_times.clear()
            torch_times.clear()
        between()
        if mode == 2:
            time.sleep(0.01)  # the pyconv step's duration, without its threads
            continue
        t0 = time.perf_counter()
        step()
        step_times.append(time.perf_counter() - t0)
    med = lambda v: float(np.median(v)) * 1e3 if v else float("nan")  # noqa: E731
    print(f"{med(step_times):.4f} {med(torch_times):.4f}")


def section_torch(args):
    res = {m: [] for m in (0, 1, 2)}
    for _ in range(3):
        for mode in res:
            out = subprocess.run([sys.executable, __file__, "--torch-child", str(mode), "--repeats", str(args.repeats)],
                                 check=True, capture_output=True, text=True)
            res[mode].append([float(v) for v in out.stdout.split()[-2:]])
    med = {m: np.median(np.array(v), axis=0) for m, v in res.items()}
    print(f"torch linear-heavy pyconv step b64: with torch calls between steps {med[1][0]:7.3f} ms   torch absent "
          f"{med[0][0]:7.3f} ms   ratio {med[1][0] / med[0][0]:5.2f}", flush=True)
    print(f"torch conv+mm between pyconv steps {med[1][1]:7.3f} ms   with no pyconv step between "
          f"{med[2][1]:7.3f} ms   ratio {med[1][1] / med[2][1]:5.2f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sections = ["step", "train", "pair", "torch", "busy"]
    ap.add_argument("--section", nargs="+", default=sections, choices=sections)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--torch-child", type=int, choices=[0, 1, 2], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_child is not None:
        return torch_child(args.torch_child, args.repeats)
    print(f"load average {os.getloadavg()[0]:.2f}, PYCONV_SPIN_US={os.environ.get('PYCONV_SPIN_US', '(default)')}",
          flush=True)
    for name in args.section:
        globals()[f"section_{name}"](args)


if __name__ == "__main__":
    main()
