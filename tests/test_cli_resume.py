"""Long runs lose nothing (issue "First contact", item 11, and item 8's NaN loss): a checkpoint
after every epoch, SIGINT/SIGTERM save and say how to resume, ``--resume`` continues bitwise."""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import pyconv
from pyconv import cli
from pyconv import functional as F
from pyconv.checkpoint import load_checkpoint

ENV = dict(os.environ, PYTHONWARNINGS="ignore", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
RUN = ("--epochs", 6, "--batch-size", 8, "--seed", 3, "--quiet", "--threads", 1)  # ~0.5 s epochs: time to signal


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "pyconv", *map(str, args)], capture_output=True, text=True,
                          cwd=tempfile.gettempdir(), env=ENV, timeout=timeout)


def one_line_error(text):
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def interrupted(out, sig, after_epoch, *extra):
    """Starts a run, sends ``sig`` once the table row of ``after_epoch`` is printed; returns
    (exit status, stdout, stderr)."""
    p = subprocess.Popen([sys.executable, "-m", "pyconv", "train", *map(str, RUN), "--out", str(out), *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tempfile.gettempdir(), env=ENV)
    lines = []
    for line in p.stdout:
        lines.append(line)
        if line.split()[:1] == [str(after_epoch)]:
            p.send_signal(sig)
            break
    stdout, stderr = p.communicate(timeout=300)
    return p.returncode, "".join(lines) + stdout, stderr


def weights(path):
    return load_checkpoint(path)["model"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    r = run("train", *RUN, "--out", out, "--no-plots")
    assert r.returncode == 0, r.stderr
    return out


def test_11_sigint_then_resume_gives_bitwise_the_same_weights(uninterrupted, tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = interrupted(out, signal.SIGINT, 3)
    assert code == 130, stderr
    line = one_line_error(stderr)
    assert line.startswith("pyconv train: SIGINT at ") and line.endswith(f"resume with: pyconv train --resume {out}")
    for name in ("checkpoint.npz", "best.npz", "metrics.json", "curves.png", "filters.png", "activations.png"):
        assert (out / name).stat().st_size > 0, name
    meta = load_checkpoint(out / "checkpoint.npz")["meta"]
    assert 3 <= meta["train_state"]["epoch"] < 6 and not meta["finished"]
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) == meta["train_state"]["epoch"]
    # a new run into the unfinished directory is refused, pointing at --resume
    r = run("train", "--out", out)
    assert r.returncode == 1 and f"pyconv train --resume {out}" in one_line_error(r.stderr)
    # --resume keeps the run's options: changing one is refused
    r = run("train", "--resume", out, "--lr", "0.1")
    assert r.returncode == 1 and "drop --lr" in one_line_error(r.stderr)
    r = run("train", "--resume", out, "--quiet", "--no-plots")
    assert r.returncode == 0, r.stderr
    assert re.match(rf"pyconv train: resuming {re.escape(str(out))} from (epoch [456] of 6, batch \d+ of 180|the end "
                    r"of epoch [345] of 6)\n", r.stdout), r.stdout
    a, b = weights(uninterrupted / "checkpoint.npz"), weights(out / "checkpoint.npz")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # bitwise
    ha = load_checkpoint(uninterrupted / "checkpoint.npz")["meta"]["history"]
    hb = load_checkpoint(out / "checkpoint.npz")["meta"]["history"]
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
    r = run("train", "--resume", out)
    assert r.returncode == 1 and "finished" in one_line_error(r.stderr)


def test_11_sigterm_after_the_first_epoch_saves_and_exits_143(tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = interrupted(out, signal.SIGTERM, 1, "--augment", "shift,flip")
    assert code == 143, stderr
    assert "SIGTERM" in one_line_error(stderr) and f"--resume {out}" in stderr
    assert (out / "checkpoint.npz").exists() and (out / "curves.png").exists()
    r = run("eval", out / "checkpoint.npz")
    assert r.returncode == 0 and "accuracy" in r.stdout, r.stderr
    r = run("eval", out / "best.npz")
    assert r.returncode == 0, r.stderr
    r = run("train", "--resume", out, "--quiet", "--no-plots")  # mid-epoch state with augmentation resumes too
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(out / "checkpoint.npz")["meta"]["finished"]


def test_11_resume_mistakes_are_one_line(tmp_path):
    r = run("train", "--resume", tmp_path / "nope")
    assert r.returncode == 1 and "no such directory" in one_line_error(r.stderr)
    r = run("train", "--resume", tmp_path)
    assert r.returncode == 1 and "has no checkpoint.npz" in one_line_error(r.stderr)


def test_11_stop_after_epoch_3_of_6_in_process_resumes_bitwise(tmp_path, monkeypatch, capsys):
    """The same through the Python entry point, stopping exactly at the end of epoch 3 (the flag
    the signal handler sets, raised from the per-epoch hook)."""
    from pyconv import cli_train

    args = ["train", "--epochs", 6, "--train-size", 256, "--test-size", 64, "--quiet", "--no-plots", "--threads", 1]
    assert cli.main(args + ["--out", tmp_path / "a"]) == 0
    original = cli_train._Signals.__call__

    def stop_after_3(self):
        if load_checkpoint_epoch(tmp_path / "b") >= 3 and self.signum is None:
            self.signum = signal.SIGINT
        return original(self)

    def load_checkpoint_epoch(out):
        p = out / "checkpoint.npz"
        return load_checkpoint(p)["meta"]["train_state"]["epoch"] if p.exists() else 0

    monkeypatch.setattr(cli_train._Signals, "__call__", stop_after_3)
    assert cli.main(args + ["--out", tmp_path / "b"]) == 130
    assert load_checkpoint(tmp_path / "b" / "checkpoint.npz")["meta"]["train_state"]["batch"] == 0
    monkeypatch.setattr(cli_train._Signals, "__call__", original)
    assert cli.main(["train", "--resume", tmp_path / "b", "--quiet", "--no-plots"]) == 0
    a, b = weights(tmp_path / "a" / "checkpoint.npz"), weights(tmp_path / "b" / "checkpoint.npz")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_8_nan_loss_stops_with_exit_1_and_keeps_the_last_good_epoch(tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    original = F.cross_entropy

    def poisoned(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        out = original(input, target, weight, ignore_index, reduction, label_smoothing)
        if reduction == "mean":  # training batches (evaluation sums)
            calls["n"] += 1
            if calls["n"] == 9 + 5:  # epoch 2 (8 batches of 32 per epoch), batch 6
                return out * float("nan")
        return out

    monkeypatch.setattr(F, "cross_entropy", poisoned)
    out = tmp_path / "run"
    code = cli.main(["train", "--epochs", 4, "--train-size", 256, "--test-size", 64, "--quiet", "--no-plots",
                     "--out", out])
    err = capsys.readouterr().err
    assert code == 1
    line = one_line_error(err)
    assert "loss became nan at epoch 2, batch 6 of 8" in line and "keeps epoch 1" in line and "--lr" in line
    meta = load_checkpoint(out / "checkpoint.npz")["meta"]
    assert meta["train_state"]["epoch"] == 1 and all(np.isfinite(v).all() for v in weights(out / "checkpoint.npz").values())


def test_8_diverging_lr_exits_1_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    r = run("train", "--optimizer", "sgd", "--lr", "1e6", "--out", out, "--quiet")
    assert r.returncode == 1
    line = one_line_error(r.stderr)
    assert "loss became" in line and "at epoch 1, batch" in line and "no checkpoint was written" in line
    assert not out.exists()


def test_trainer_state_round_trip_mid_epoch():
    """Trainer.state()/load_state() alone: stopped after batch 3 of 5, resumed in a fresh Trainer."""
    from pyconv import data, models
    from pyconv.train import Trainer, make_optimizer, make_schedule

    tr, te = data.load_digits()
    tr, te = tr.subset(160), te.subset(40)

    def make():
        pyconv.manual_seed(0)
        m = models.build_model("digits-cnn", (1, 8, 8), 10)
        opt = make_optimizer("sgd", m.parameters())
        return Trainer(m, tr, te, 2, opt, 32, seed=1, schedule=make_schedule("step", opt, 2),
                       augment=data.Augment(1, True)), opt

    whole, _ = make()
    whole.run()
    part, opt = make()
    count = {"n": 0}

    def stop():
        count["n"] += 1
        return count["n"] == 3

    assert part.run(should_stop=stop) == "stopped" and (part.epoch, part.batch) == (0, 3)
    state, arrays = part.state()
    state = json.loads(json.dumps(state))
    model_state, opt_state = part.model.state_dict(), opt.state_dict()
    fresh, opt2 = make()
    fresh.model.load_state_dict(model_state)
    opt2.load_state_dict(opt_state)
    fresh.load_state(state, arrays)
    assert fresh.run() == "done"
    for a, b in zip(whole.model.parameters(), fresh.model.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
