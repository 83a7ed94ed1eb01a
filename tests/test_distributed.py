"""`pyconv train` data-parallel under torchrun: two processes take the steps one process takes."""
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

pytest.importorskip("torch.distributed")

ENV = dict(os.environ, PYTHONWARNINGS="ignore", MPLBACKEND="Agg")
for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(k, None)
# uneven shares (batch 33: 17 + 16; the last batch of 200 images holds 2), shifted images
RUN = ("--epochs", "2", "--train-size", "200", "--test-size", "50", "--optimizer", "sgd", "--lr", "0.05",
       "--batch-size", "33", "--augment", "shift", "--no-plots", "--quiet", "--threads", "1")


def _train(out, *launcher, env=ENV):
    cmd = [sys.executable, *launcher, "-m", "pyconv", "train", *RUN, "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(), timeout=300)


def test_two_processes_take_the_steps_of_one(tmp_path):
    r2 = _train(tmp_path / "two", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    assert r2.returncode == 0, r2.stdout + r2.stderr
    r1 = _train(tmp_path / "one")
    assert r1.returncode == 0, r1.stderr
    header = [line for line in r2.stdout.splitlines() if line.startswith("pyconv train:")]
    assert len(header) == 1 and "data-parallel over 2 processes" in header[0]  # rank 1 prints nothing
    a, b = np.load(tmp_path / "two" / "checkpoint.npz"), np.load(tmp_path / "one" / "checkpoint.npz")
    weights = [k for k in b.files if k.startswith("model/")]
    assert weights and sorted(weights) == sorted(k for k in a.files if k.startswith("model/"))
    for k in weights:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-6 * np.abs(b[k]).max(), err_msg=k)
    rows = lambda r: [line.split()[1:5] for line in r.stdout.splitlines() if line.strip()[:1].isdigit()]  # noqa: E731
    np.testing.assert_allclose(np.array(rows(r2), float), np.array(rows(r1), float), atol=2e-4)
    assert sorted(os.listdir(tmp_path)) == ["one", "two"]  # rank 1 wrote nothing of its own


def test_world_size_without_torchrun_is_one_line(tmp_path):
    env = dict(ENV, WORLD_SIZE="2")
    r = _train(tmp_path / "x", env=env)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "WORLD_SIZE=2 but RANK, MASTER_ADDR, MASTER_PORT not set" in r.stderr and not (tmp_path / "x").exists()
    r = subprocess.run([sys.executable, "-m", "pyconv", "train", "--serve", "--out", ""], capture_output=True,
                       text=True, env=env, cwd=tempfile.gettempdir(), timeout=120)
    assert r.returncode == 1 and "--serve cannot watch a data-parallel run" in r.stderr, r.stderr
