"""The `pyconv` command line, run as subprocesses."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

ENV = dict(os.environ, PYTHONWARNINGS="ignore", MPLBACKEND="Agg")


def run(*args):
    # From a neutral directory: in the repository root `-m pyconv` would import the source tree,
    # which lacks the compiled extension when pyconv is installed non-editable.
    return subprocess.run([sys.executable, "-m", "pyconv", *map(str, args)], capture_output=True, text=True,
                          cwd=tempfile.gettempdir(), env=ENV, timeout=300)


def assert_one_line_error(r):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "error" in lines[0], r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    r = run("train", "--epochs", 1, "--train-size", 300, "--test-size", 100, "--out", out, "--quiet", "--threads", 1)
    assert r.returncode == 0, r.stderr
    return out, r


def test_train_writes_outputs(trained):
    out, r = trained
    assert "test accuracy" in r.stdout and "epoch" in r.stdout
    for name in ("checkpoint.npz", "metrics.json", "curves.png", "filters.png", "activations.png"):
        assert (out / name).stat().st_size > 0, name
    m = json.loads((out / "metrics.json").read_text())
    (ep,) = m["epochs"]
    assert set(ep) >= {"epoch", "train_loss", "train_accuracy", "test_accuracy", "seconds", "images_per_second"}
    assert ep["epoch"] == 1 and 0 <= ep["test_accuracy"] <= 1
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_and_predict(trained, tmp_path):
    out, _ = trained
    r = run("eval", out / "checkpoint.npz")
    assert r.returncode == 0 and "accuracy" in r.stdout, r.stderr
    from PIL import Image

    from pyconv import data

    _, te = data.load_digits()
    img = tmp_path / "digit.png"
    Image.fromarray((255 * (1 - te.x[0, 0])).astype(np.uint8)).resize((32, 32)).save(img)
    r = run("predict", out / "checkpoint.npz", img, "--top", 3)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert "top 3 of 10" in lines[0] and len(lines) == 4
    probs = [float(l.split()[-1]) for l in lines[1:]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_summary_lecture(tmp_path):
    spec = tmp_path / "lecture.json"
    spec.write_text(json.dumps([{"type": "Conv2d", "out_channels": 10, "kernel_size": 5, "stride": 1, "padding": 2}]))
    r = run("summary", "--model", spec, "--input", "3x32x32")
    assert r.returncode == 0, r.stderr
    assert "3x32x32" in r.stdout and "10x32x32" in r.stdout and "760" in r.stdout  # volumes are CxHxW everywhere
    r = run("summary", "--model", "lenet", "--input", "1x28x28")
    assert r.returncode == 0 and "total params" in r.stdout


def test_info_and_bench():
    r = run("info")
    assert r.returncode == 0 and "kernels:" in r.stdout and "cpu isa" in r.stdout
    r = run("bench", "--case", "lecture.7x7_f3_s1", "--repeats", 1, "--no-torch")
    assert r.returncode == 0 and "lecture.7x7_f3_s1" in r.stdout, r.stderr


@pytest.mark.parametrize("args, match", [
    (("train", "--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"), "cifar-10-python.tar.gz"),
    (("train", "--dataset", "cifar10"), "needs --data-dir"),
    (("train", "--dataset", "npz", "--data-dir", "/nonexistent.npz"), "does not exist"),
    (("train", "--model", "no-such-net"), "unknown model"),
    (("train", "--epochs", "0"), "positive integer"),
    (("summary", "--input", "3x32"), "bad shape"),
    (("summary", "--input", "axbxc"), "bad shape"),
    (("summary", "--model", "lenet", "--input", "3x2x2"), "layer"),
    (("eval", "/nonexistent/ck.npz"), "does not exist"),
    (("frobnicate",), "invalid choice"),
])
def test_errors_are_one_line(args, match):
    line = assert_one_line_error(run(*args))
    assert match in line


def test_predict_errors(trained, tmp_path):
    out, _ = trained
    line = assert_one_line_error(run("predict", out / "checkpoint.npz", tmp_path / "missing.png"))
    assert "does not exist" in line
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert "cannot read image" in assert_one_line_error(run("predict", out / "checkpoint.npz", bad))
    not_ck = tmp_path / "x.npz"
    np.savez(not_ck, a=np.zeros(2))
    assert "not a pyconv checkpoint" in assert_one_line_error(run("eval", not_ck))


def test_bad_model_file(tmp_path):
    p = tmp_path / "m.json"
    p.write_text('[{"type": "Conv2d", "out_channels": 4, "kernal_size": 3}]')
    line = assert_one_line_error(run("train", "--model", p, "--epochs", 1, "--out", ""))
    assert "layer 0 (Conv2d)" in line and "kernal_size" in line
    p.write_text("{not json")
    assert "not valid JSON" in assert_one_line_error(run("summary", "--model", p))
