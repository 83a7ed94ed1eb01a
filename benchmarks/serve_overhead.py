"""What ``pyconv train --serve`` costs the training: the same run without the page, served with no
page open, and served with a headless chromium showing the page, interleaved, median of N.

    python benchmarks/serve_overhead.py --repeats 5                          # digits, digits-cnn (defaults)
    python benchmarks/serve_overhead.py --cifar-shaped 5000 --epochs 2 --repeats 3   # convnetjs-cifar, random 3x32x32

Training time is the wall-clock time from the table's head to the ``test accuracy ... in X s`` line
(every epoch and its evaluation, not the start-up); with ``--serve`` the run is then stopped with
SIGINT. ``--cifar-shaped N`` writes N
random 3x32x32 images with random labels (and N/5 test images) to an .npz and trains the CS231n
demo's net on them (``--data-dir`` takes a real data set instead, with its ``--dataset``).
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

DONE = re.compile(r"after \d+ epochs? in ([0-9.]+) s")
HEAD = re.compile(r"^epoch  train loss")
URL = re.compile(r"watch it learn at (http://\S+/)")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]


class _EventReader:
    """The page's traffic without a browser: reads /events as fast as it comes."""

    def __init__(self, url):
        import urllib.request

        self.r = urllib.request.urlopen(url + "events", timeout=30)
        self.bytes = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            while chunk := self.r.read1(1 << 16):
                self.bytes += len(chunk)
        except OSError:
            pass

    def close(self):
        self.r.close()


def one_run(train_args, mode, browser):
    """Training seconds of one run: mode 'plain', 'serve' (no page) or 'page' (``browser`` shows it)."""
    cmd = [sys.executable, "-m", "pyconv", "train", *train_args, "--out", "", "--quiet"]
    if mode != "plain":
        cmd += ["--serve", "--port", "0"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                         cwd=tempfile.gettempdir())
    lines = []  # (arrival time, line): stamped by a thread, so opening the page delays no stamp

    def read():
        for line in p.stdout:
            lines.append((time.perf_counter(), line))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    tab = None
    try:
        while not any(DONE.search(x) for _, x in lines) and p.poll() is None:
            if mode in ("page", "sse") and tab is None:
                url = next((URL.search(x).group(1) for _, x in lines if URL.search(x)), None)
                if url and mode == "page":
                    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
                    tab.goto(url)
                elif url:
                    tab = _EventReader(url)
            time.sleep(0.01)
        if mode != "plain" and p.poll() is None:  # what the training thread itself spent on the page
            import json
            import urllib.request

            url = next(URL.search(x).group(1) for _, x in lines if URL.search(x))
            with urllib.request.urlopen(url + "state", timeout=30) as r:
                inside = json.load(r)["serve_seconds"]
        else:
            inside = 0.0
    finally:
        if mode != "plain":
            p.send_signal(signal.SIGINT)
        p.communicate(timeout=120)
        reader.join(10)
        if tab is not None:
            tab.close()
    head = next((t for t, x in lines if HEAD.search(x)), None)
    done = next((t for t, x in lines if DONE.search(x)), None)
    if head is None or done is None:
        raise RuntimeError(f"{' '.join(cmd)} printed no training time (exit {p.returncode})")
    return done - head, inside


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--cifar-shaped", type=int, metavar="N", help="random 3x32x32 data, N training images")
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--modes", nargs="+", default=["plain", "serve", "page"], choices=["plain", "serve", "sse", "page"],
                    help="plain: no --serve; serve: no page open; sse: a client reading /events; page: chromium")
    a = ap.parse_args()
    train = []
    if a.cifar_shaped:
        rng = np.random.default_rng(0)
        n, m = a.cifar_shaped, max(a.cifar_shaped // 5, 10)
        path = os.path.join(tempfile.mkdtemp(), "cifar_shaped.npz")
        np.savez(path, x=rng.random((n, 3, 32, 32), np.float32), y=rng.integers(0, 10, n),
                 x_test=rng.random((m, 3, 32, 32), np.float32), y_test=rng.integers(0, 10, m))
        train += ["--dataset", "npz", "--data-dir", path, "--model", a.model or "convnetjs-cifar"]
    else:
        if a.dataset:
            train += ["--dataset", a.dataset]
        if a.data_dir:
            train += ["--data-dir", a.data_dir]
        if a.model:
            train += ["--model", a.model]
    if a.epochs:
        train += ["--epochs", str(a.epochs)]
    times = {mode: [] for mode in a.modes}
    inside = {mode: [] for mode in a.modes}
    with open("/proc/loadavg") as f:
        load0 = f.read().split()[:3]
    start = time.time()
    pw = browser = None
    if "page" in a.modes:
        from playwright.sync_api import sync_playwright

        pw = sync_playwright().start()
        browser = pw.chromium.launch(executable_path=a.chromium, args=ARGS)
    try:
        for r in range(a.repeats):
            for mode in a.modes:  # interleaved: the machine's load drifts alike for all three
                t, i = one_run(train, mode, browser)
                times[mode].append(t)
                inside[mode].append(i)
                print(f"  run {r + 1} {mode:>5}: {t:.2f} s (page work in the training thread {i:.3f} s)",
                      file=sys.stderr, flush=True)
    finally:
        if browser is not None:
            browser.close()
            pw.stop()
    with open("/proc/loadavg") as f:
        load1 = f.read().split()[:3]
    base = statistics.median(times[a.modes[0]])
    print(f"pyconv train {' '.join(train)}: {a.repeats} runs each, interleaved, {time.time() - start:.0f} s; "
          f"load average {' '.join(load0)} before, {' '.join(load1)} after")
    for mode in a.modes:
        med = statistics.median(times[mode])
        share = statistics.median(i / t for i, t in zip(inside[mode], times[mode]))
        print(f"  {mode:>5}: median {med:.2f} s  ({', '.join(f'{t:.2f}' for t in times[mode])})  "
              f"{100 * (med / base - 1):+.1f}%; the training thread's page work {100 * share:.1f}% of its time")


if __name__ == "__main__":
    main()
