"""The mistakes a new user makes end in one clear line, before any work is lost (issue "First
contact", items 1-10 and 12; resuming and signals are in test_cli_resume.py).

Each test runs the `pyconv` command line as a subprocess: exit status, the one-line message on
stderr, nothing written where nothing should be, and no training started where the check must
come first (no epoch row on stdout).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from pyconv import data, models, nn
from pyconv.checkpoint import CheckpointError, save_checkpoint

ENV = dict(os.environ, PYTHONWARNINGS="ignore", MPLBACKEND="Agg")
README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
EPOCH_ROW = re.compile(r"^\s+1\s+\d", re.M)


def run(*args, cwd=None, timeout=300, env=ENV):
    return subprocess.run([sys.executable, "-m", "pyconv", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or tempfile.gettempdir(), env=env, timeout=timeout)


def one_line_error(r, code=None):
    assert r.returncode != 0 if code is None else r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error" in lines[0], r.stderr
    return lines[0]


def no_training(r):
    """The check came before the first batch: no epoch row, no run header."""
    assert not EPOCH_ROW.search(r.stdout) and "pyconv train:" not in r.stdout, r.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    r = run("train", "--epochs", 1, "--train-size", 300, "--test-size", 100, "--out", out, "--quiet", "--threads", 1)
    assert r.returncode == 0, r.stderr
    return out


def small_npz(path, n=120, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.random((n, 1, 6, 6)).astype(np.float32) * 0.2
    x[np.arange(n), 0, y, :] += 1.0  # class k: a bright row k
    np.savez(path, x=x, y=y)
    return path


# ------------------------------------------------------------------ 1. damaged checkpoint and data files


def _damage(src, dst, how):
    raw = bytearray(src.read_bytes())
    if how == "truncated":
        raw = raw[: len(raw) // 2]
    elif how == "corrupted":  # bytes inside the first array's compressed data: a CRC / zlib error on read
        at = raw.find(b".npy") + 200
        raw[at:at + 64] = bytes(64)
    dst.write_bytes(bytes(raw))
    return dst


@pytest.mark.parametrize("how, match", [("truncated", "is damaged"), ("corrupted", "is damaged"),
                                        ("text", "is not a pyconv checkpoint: it is a text file"),
                                        ("objects", "holds Python objects"), ("npy", "single .npy array")])
def test_1_eval_of_a_bad_checkpoint_is_one_line(trained, tmp_path, how, match):
    path = tmp_path / "ck.npz"
    if how in ("truncated", "corrupted"):
        _damage(trained / "checkpoint.npz", path, how)
    elif how == "text":
        path.write_text("epoch,loss\n1,0.5\n")
    elif how == "objects":
        np.savez(path, meta=np.array("{}"), w=np.array([{"a": 1}], dtype=object))
    else:
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    for command in (("eval", path), ("predict", path, tmp_path / "x.png")):
        line = one_line_error(run(*command), 1)
        assert str(path) in line and match in line and "allow_pickle" not in line, line


@pytest.mark.parametrize("how", ["truncated", "corrupted", "text", "objects", "nan"])
def test_1_train_on_a_bad_npz_is_one_line(tmp_path, how):
    good = small_npz(tmp_path / "good.npz")
    path = tmp_path / "bad.npz"
    if how == "nan":
        x = np.load(good)["x"]
        x[3, 0, 1, 1] = np.nan
        np.savez(path, x=x, y=np.arange(len(x)) % 3)
    elif how == "text":
        path.write_text("x,y\n1,2\n")
    elif how == "objects":
        np.savez(path, x=np.array([None, 1], dtype=object), y=np.zeros(2, np.int64))
    else:
        _damage(good, path, how)
    r = run("train", "--dataset", "npz", "--data-dir", path, "--out", tmp_path / "out")
    line = one_line_error(r, 1)
    assert str(path) in line and "allow_pickle" not in line
    no_training(r)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ 2. unusable --out / --json, found first


def test_2_out_is_an_existing_file(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    t0 = time.perf_counter()
    r = run("train", "--epochs", 30, "--out", afile)
    assert time.perf_counter() - t0 < 20
    line = one_line_error(r, 1)
    assert f"--out {afile}: exists and is not a directory" in line
    no_training(r)
    assert afile.read_text() == "keep me"


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_2_out_cannot_be_created(tmp_path, where):
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "run" if where == "under_a_file" else "/proc/pyconv-run-test/run"
    r = run("train", "--epochs", 30, "--out", out)
    line = one_line_error(r, 1)
    assert f"--out {out}: cannot create the directory" in line
    no_training(r)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_2_out_not_writable(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        r = run("train", "--epochs", 30, "--out", ro)
        assert "cannot write" in one_line_error(r, 1)
        no_training(r)
    finally:
        ro.chmod(0o700)


def test_2_full_disk_is_found_before_training(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount") or \
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        r = run("train", "--epochs", 30, "--out", mnt / "run")
        line = one_line_error(r, 1)
        assert "no space left on the device" in line
        no_training(r)
        assert not (mnt / "run").exists() and not os.listdir(mnt)  # what the check created is gone
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


@pytest.mark.parametrize("target", ["dir", "missing_dir"])
def test_2_bench_json_is_checked_before_the_benchmarks(tmp_path, target):
    path = tmp_path if target == "dir" else tmp_path / "no" / "such" / "rows.json"
    r = run("bench", "--case", "lecture.7x7_f3_s1", "--repeats", 1, "--no-torch", "--json", path)
    line = one_line_error(r, 1)
    assert f"--json {path}" in line
    assert "pyconv bench:" not in r.stdout  # no benchmark ran


def test_2_bench_json_is_written(tmp_path):
    path = tmp_path / "rows.json"
    r = run("bench", "--case", "lecture.7x7_f3_s1", "--repeats", 1, "--no-torch", "--json", path)
    assert r.returncode == 0, r.stderr
    assert json.loads(path.read_text())["rows"] and not [p for p in os.listdir(tmp_path) if p != "rows.json"]


# ------------------------------------------------------------------ 3. --input and --layout


@pytest.fixture
def lecture_model(tmp_path):
    p = tmp_path / "lec.json"
    p.write_text(json.dumps([{"type": "Conv2d", "out_channels": 10, "kernel_size": 5, "padding": 2}]))
    return p


def test_3_lecture_volume_is_refused_as_ambiguous_showing_both_readings(lecture_model):
    line = one_line_error(run("summary", "--model", lecture_model, "--input", "32x32x3"), 1)
    assert "--input 32x32x3 is ambiguous" in line
    assert "C=32, H=32, W=3) gives 8,010 parameters" in line and "C=3) gives 760 parameters" in line
    assert "--layout chw or --layout hwc" in line


@pytest.mark.parametrize("args", [("--input", "32x32x3", "--layout", "hwc"), ("--input", "32x32x3", "--layout", "HxWxC"),
                                  ("--input", "3x32x32"), ("--input", "3x32x32", "--layout", "chw")])
def test_3_both_forms_are_accepted_explicitly(lecture_model, args):
    r = run("summary", "--model", lecture_model, *args)
    assert r.returncode == 0, r.stderr
    assert "input 3x32x32 (CxHxW)" in r.stdout and "10x32x32" in r.stdout and "760" in r.stdout


def test_3_only_one_reading_fits_still_needs_the_layout():
    line = one_line_error(run("summary", "--model", "lenet", "--input", "32x32x3"), 1)
    assert "does not fit the model" in line and "--layout" in line
    r = run("summary", "--model", "lenet", "--input", "32x32x3", "--layout", "hwc")
    assert r.returncode == 0 and "input 3x32x32" in r.stdout
    assert "bad shape" in one_line_error(run("summary", "--input", "32x32"), 2)
    assert "unknown layout" in one_line_error(run("summary", "--layout", "nhwc"), 2)


def test_3_volumes_are_spelled_cxhxw_in_the_train_header(tmp_path):
    r = run("train", "--epochs", 1, "--train-size", 64, "--test-size", 32, "--out", "", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "1x8x8 CxHxW" in r.stdout.splitlines()[0]


# ------------------------------------------------------------------ 4. the source tree shadowing the install


def test_4_source_tree_without_the_extension_says_so(tmp_path):
    src = os.path.dirname(os.path.abspath(data.__file__))
    clone = tmp_path / "clone"
    shutil.copytree(src, clone / "pyconv", ignore=shutil.ignore_patterns("_core*", "__pycache__"))
    (clone / "cpp").mkdir()
    (clone / "pyproject.toml").write_text("[project]\nname = 'pyconv'\n")
    site = os.path.dirname(os.path.dirname(np.__file__))
    # -S: no .pth files, so an editable install's redirect does not hide the shadowing; numpy's
    # directory stands for the installed pyconv (it holds the editable build's compiled extension)
    env = dict(ENV, PYTHONPATH=site)
    r = subprocess.run([sys.executable, "-S", "-m", "pyconv", "info"], capture_output=True, text=True, cwd=clone,
                       env=env, timeout=60)
    line = one_line_error(r, 1)
    assert f"importing pyconv from its source directory {clone}" in line and "pip install -e ." in line
    r = subprocess.run([sys.executable, "-S", "-c", "import pyconv"], capture_output=True, text=True, cwd=clone,
                       env=env, timeout=60)
    assert r.returncode == 1 and "ImportError: you are importing pyconv from its source directory" in r.stderr


# ------------------------------------------------------------------ 5. checkpoints of models built in Python


def test_5_python_model_round_trips_through_eval_and_predict(tmp_path):
    from PIL import Image

    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.1),
                          nn.Linear(4 * 4 * 4, 10))
    path = tmp_path / "mine.npz"
    _, te = data.load_digits()
    mean, std = data.channel_stats(te.x)
    save_checkpoint(path, model, input_shape=(1, 8, 8), dataset="digits",
                    normalize=dict(mean=mean.tolist(), std=std.tolist()))
    r = run("eval", path)
    assert r.returncode == 0 and "accuracy" in r.stdout, r.stderr
    img = tmp_path / "d.png"
    Image.fromarray((255 * (1 - te.x[0, 0])).astype(np.uint8)).save(img)
    r = run("predict", path, img)
    assert r.returncode == 0 and "top 3 of 10" in r.stdout, r.stderr


def test_5_undescribable_model_fails_at_save_time_saying_what_to_pass(tmp_path):
    class Block(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(CheckpointError, match=r"layer 1 \(Block\).*pass model_spec="):
        save_checkpoint(tmp_path / "x.npz", nn.Sequential(nn.Flatten(), Block()), input_shape=(1, 8, 8),
                        num_classes=10)
    with pytest.raises(CheckpointError, match=r"pass input_shape=\(C, H, W\)"):
        save_checkpoint(tmp_path / "x.npz", nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    assert not os.listdir(tmp_path)
    save_checkpoint(tmp_path / "w.npz", nn.Sequential(Block()), model_spec=None)  # weights only: allowed
    line = one_line_error(run("eval", tmp_path / "w.npz"), 1)
    assert "without a model description" in line


# ------------------------------------------------------------------ 6. the data path is absolute


def test_6_npz_checkpoint_evaluates_from_another_directory(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    small_npz(a / "bars.npz")
    r = run("train", "--dataset", "npz", "--data-dir", "bars.npz", "--model", "lenet", "--epochs", 1, "--out", "run",
            "--quiet", "--no-plots", cwd=a)
    assert r.returncode == 0, r.stderr
    r = run("eval", a / "run" / "checkpoint.npz", cwd=b)
    assert r.returncode == 0 and "on npz test set" in r.stdout, r.stderr
    (a / "bars.npz").rename(a / "moved.npz")
    line = one_line_error(run("eval", a / "run" / "checkpoint.npz", cwd=b), 1)
    assert f"trained on npz data from {a / 'bars.npz'}, which does not exist" in line and "--data-dir" in line


# ------------------------------------------------------------------ 7. model-file mistakes at build time


@pytest.mark.parametrize("layers, match", [
    ([{"type": "Conv2d", "out_channels": 8, "kernel_size": 3}, {"type": "ReLU"}],
     r"ends in a 8x6x6 volume \(CxHxW\) after layer 1 \(ReLU\).*add \{\"type\": \"Linear\", \"out_features\": "
     r"\"classes\"\}"),
    ([{"type": "Conv2d", "out_channels": 8, "kernel_size": 3}, {"type": "Linear", "out_features": 5}],
     r"layer 1 \(Linear\) gives 5 outputs, but the digits data set has 10 classes"),
])
def test_7_model_file_is_checked_before_the_first_batch(tmp_path, layers, match):
    p = tmp_path / "m.json"
    p.write_text(json.dumps(layers))
    r = run("train", "--model", p, "--epochs", 30, "--out", tmp_path / "out")
    line = one_line_error(r, 1)
    assert f"model file {p}" in line and re.search(match, line), line
    no_training(r)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ 8. numeric options, up front


@pytest.mark.parametrize("args, option", [
    (("train", "--lr", "nan"), "--lr"), (("train", "--lr", "inf"), "--lr"), (("train", "--lr", "-1"), "--lr"),
    (("train", "--lr", "0"), "--lr"), (("train", "--weight-decay", "-0.1"), "--weight-decay"),
    (("train", "--weight-decay", "nan"), "--weight-decay"), (("train", "--seed", "-1"), "--seed"),
    (("train", "--threads", "0"), "--threads"), (("train", "--batch-size", "0"), "--batch-size"),
    (("train", "--epochs", "1.5"), "--epochs"), (("train", "--train-size", "0"), "--train-size"),
    (("bench", "--repeats", "0"), "--repeats"), (("bench", "--threads", "0"), "--threads"),
    (("predict", "ck.npz", "x.png", "--top", "0"), "--top"), (("summary", "--classes", "0"), "--classes"),
])
def test_8_numeric_options_are_checked_first(args, option):
    r = run(*args)
    line = one_line_error(r, 2)
    assert f"argument {option}:" in line
    assert not r.stdout  # nothing ran: no header, no bench rows


def test_8_augment_and_data_dir_mistakes(tmp_path):
    assert "unknown transform 'rotate'" in one_line_error(run("train", "--augment", "rotate"), 1)
    line = one_line_error(run("train", "--data-dir", tmp_path), 1)  # digits are embedded
    assert "--data-dir" in line and "only read with --dataset cifar10 or npz" in line


# ------------------------------------------------------------------ 9. documented formats and defaults


def _readme_block(lang):
    text = open(README, encoding="utf-8").read()
    blocks = re.findall(rf"```{lang}\n(.*?)```", text, re.S)
    return [b for b in blocks if "type" in b]


@pytest.mark.parametrize("lang", ["json", "toml"])
def test_9_readme_model_file_examples_work(tmp_path, lang):
    (block,) = _readme_block(lang)[:1]
    p = tmp_path / f"net.{lang}"
    p.write_text(block)
    r = run("summary", "--model", p, "--input", "3x32x32")
    assert r.returncode == 0 and "total params" in r.stdout, r.stderr


@pytest.mark.parametrize("command", ["train", "summary", "eval", "predict", "bench", "check"])
def test_9_every_help_shows_the_defaults(command):
    r = run(command, "--help")
    assert r.returncode == 0
    if command == "train":
        for text in ("(default: 12)", "(default: 32)", "(default: cosine)", "(default: adam 0.001, sgd 0.05)",
                     "(default: pyconv-run)", "(default: shift,flip for cifar10, else none)"):
            assert text in " ".join(r.stdout.split()), text
    elif command in ("summary", "bench"):
        assert "(default: 3x32x32)" in r.stdout or "(default: 7)" in r.stdout


def test_9_header_names_the_schedule():
    r = run("train", "--epochs", 2, "--train-size", 64, "--test-size", 32, "--out", "", "--quiet")
    assert "lr 0.001 cosine-annealed to 0 over 2 epochs" in r.stdout.splitlines()[0]
    r = run("train", "--epochs", 1, "--schedule", "none", "--train-size", 64, "--test-size", 32, "--out", "",
            "--quiet", "--threads", 1)
    head = r.stdout.splitlines()[0]
    assert "constant lr 0.001" in head and "1 epoch," in head and "1 thread" in head and "1 epochs" not in head
    assert "after 1 epoch in" in r.stdout


# ------------------------------------------------------------------ 10. smaller ones


def test_10_closed_pipe_exits_quietly():
    p = subprocess.Popen([sys.executable, "-m", "pyconv", "info"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=tempfile.gettempdir(), env=dict(ENV, PYTHONUNBUFFERED="1"))
    for _ in range(3):
        p.stdout.readline()
    p.stdout.close()  # `| head -3`
    err = p.stderr.read().decode()
    p.wait(timeout=60)
    assert "Broken pipe" not in err and "Traceback" not in err and err == ""
    assert p.returncode in (0, 141)


def _digit_image(path, bits):
    from PIL import Image

    _, te = data.load_digits()
    a = 1 - te.x[0, 0]
    if bits == 16:
        Image.fromarray((65535 * a).astype(np.uint16)).resize((32, 24)).save(path)
    else:
        Image.fromarray((255 * a).astype(np.uint8)).resize((32, 24)).save(path)
    return path


def test_10_predict_converts_bit_depth_and_says_how_it_resized(trained, tmp_path):
    r8 = run("predict", trained / "checkpoint.npz", _digit_image(tmp_path / "d8.png", 8))
    r16 = run("predict", trained / "checkpoint.npz", _digit_image(tmp_path / "d16.png", 16))
    assert r8.returncode == 0 and r16.returncode == 0, r16.stderr
    head16 = r16.stdout.splitlines()[0]
    assert "24x32 (HxW) 16-bit gray" in head16 and "resized to 8x8, squashed: aspect ratio changed" in head16
    assert "8-bit gray" in r8.stdout.splitlines()[0]
    top = lambda r: r.stdout.splitlines()[1].split()  # noqa: E731
    assert top(r8)[0] == top(r16)[0] and abs(float(top(r8)[1]) - float(top(r16)[1])) < 0.02  # not clipped


def test_10_summary_workspace_names_its_algorithm_and_receptive_fields_grow():
    r = run("summary", "--model", "convnetjs-cifar", "--input", "3x32x32")
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("0: Conv2d"))
    assert "300.0 KiB" in row and re.search(r"(direct|im2col|winograd)/(direct|im2col|winograd)/", row)
    assert "im2col cols" in r.stdout and "im2col's input gradient" in r.stdout
    from pyconv import summary

    s = summary(models.build_model("lenet", (1, 8, 8), 10), (1, 8, 8))
    rfs = [row.receptive_field for row in s.rows if row.receptive_field]
    assert all(b[0] >= a[0] and b[1] >= a[1] for a, b in zip(rfs, rfs[1:])), rfs
    assert s.rows[-1].receptive_field == (8, 8)


def test_10_plots_say_what_they_show(trained):
    from pyconv import viz
    from pyconv.checkpoint import load_model

    model, _ = load_model(trained / "checkpoint.npz")
    _, te = data.load_digits()
    maps = viz.activation_maps(model, te.x[0])
    assert [m[0] for m in maps] == ["0", "2", "5"] and all(relu for _, _, relu in maps)
    assert all(a.min() >= 0 for _, a, _ in maps)  # after ReLU, as labelled
    assert [a.shape[0] for _, a, _ in maps] == [16, 32, 64]


# ------------------------------------------------------------------ 12. augmentation


def test_12_augment_shifts_and_flips():
    x = np.arange(2 * 1 * 5 * 5, dtype=np.float32).reshape(2, 1, 5, 5) + 1
    shifted = data.Augment(shift=2)(x, np.random.default_rng(1))
    for a, s in zip(x, shifted):
        nz = s[0][s[0] > 0]
        assert set(nz.tolist()) <= set(a[0].ravel().tolist()) and len(nz) >= 9  # a window of the image
    flipped = data.Augment(flip=True)(x, np.random.default_rng(0))
    for a, f in zip(x, flipped):
        assert np.array_equal(f, a) or np.array_equal(f, a[:, :, ::-1])
    assert str(data.Augment.parse("shift,flip")) == "shift=2,flip" and not data.Augment.parse("none")


def test_12_train_with_augment_names_it_in_the_header():
    r = run("train", "--augment", "shift=1,flip", "--epochs", 1, "--train-size", 64, "--test-size", 32, "--out", "",
            "--quiet")
    assert r.returncode == 0, r.stderr
    assert "random shifts up to 1 px and horizontal flips" in r.stdout.splitlines()[0]
    r = run("train", "--epochs", 1, "--train-size", 64, "--test-size", 32, "--out", "", "--quiet")
    assert "no augmentation" in r.stdout.splitlines()[0]


def test_12_cifar10_folder_trains_with_the_demo_augmentation_by_default(tmp_path):
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 20))}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    r = run("train", "--dataset", "cifar10", "--data-dir", tmp_path, "--epochs", 1, "--out", "", "--quiet")
    assert r.returncode == 0, r.stderr
    head = r.stdout.splitlines()[0]
    assert "cifar10 (100 train / 20 test images, 3x32x32 CxHxW), model convnetjs-cifar" in head
    assert "random shifts up to 2 px and horizontal flips" in head
    r = run("train", "--dataset", "cifar10", "--data-dir", tmp_path, "--epochs", 1, "--out", "", "--quiet",
            "--augment", "none")
    assert r.returncode == 0 and "no augmentation" in r.stdout.splitlines()[0]
