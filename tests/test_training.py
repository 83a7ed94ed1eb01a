"""Data loaders, model specs, checkpoints, summary and the training loop."""
import json
import pickle

import numpy as np
import pytest

import pyconv
from pyconv import data, models, nn, summary
from pyconv.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from pyconv.train import evaluate, fit, make_optimizer


def write_fake_cifar(root, n_train=6, n_test=4, seed=0):
    """A tiny archive in the exact cifar-10-batches-py layout (pickled dicts with bytes keys)."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir()
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else n_train
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, n)],
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"filenames": [f"img{i}.png".encode() for i in range(n)]}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return d


# ------------------------------------------------------------------------------------- data


def test_digits_embedded_split_is_fixed():
    tr, te = data.load_digits()
    assert tr.x.shape == (1438, 1, 8, 8) and te.x.shape == (359, 1, 8, 8)
    assert tr.x.dtype == np.float32 and tr.y.dtype == np.int64
    assert 0.0 <= tr.x.min() and tr.x.max() <= 1.0
    assert set(np.unique(tr.y)) == set(range(10))
    tr2, te2 = data.load_digits()
    np.testing.assert_array_equal(te.x, te2.x)
    np.testing.assert_array_equal(tr.y, tr2.y)


def test_fake_cifar_loads(tmp_path):
    d = write_fake_cifar(tmp_path)
    for path in (d, tmp_path):  # the batches folder or its parent
        tr, te = data.load_cifar10(path)
        assert tr.x.shape == (30, 3, 32, 32) and te.x.shape == (4, 3, 32, 32)
        assert tr.classes[0] == "airplane" and tr.x.max() <= 1.0
    with open(d / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    np.testing.assert_allclose(te.x[1].reshape(-1), raw[b"data"][1] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(te.y, raw[b"labels"])


def test_cifar_missing_and_corrupt(tmp_path):
    with pytest.raises(data.DataError, match="does not exist.*cifar-10-python.tar.gz"):
        data.load_cifar10(tmp_path / "nope")
    d = write_fake_cifar(tmp_path)
    (d / "data_batch_3").unlink()
    with pytest.raises(data.DataError, match="data_batch_3 is missing"):
        data.load_cifar10(d)
    (d / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(data.DataError, match="not a valid CIFAR-10"):
        data.load_cifar10(d)


def test_cifar_refuses_code_in_pickles(tmp_path):
    d = write_fake_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(d / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f, protocol=2)
    with pytest.raises(data.DataError, match="refusing"):
        data.load_cifar10(d)


def test_npz_source(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "set.npz"
    np.savez(p, x=rng.random((20, 2, 5, 6)), y=rng.integers(0, 3, 20))
    tr, te = data.load_npz(p)
    assert len(tr) == 16 and len(te) == 4 and tr.image_shape == (2, 5, 6)
    np.savez(p, x=rng.random((20, 5, 6)), y=rng.integers(0, 3, 20), x_test=rng.random((3, 5, 6)),
             y_test=np.array([0, 1, 2]))
    tr, te = data.load_npz(p)
    assert tr.image_shape == (1, 5, 6) and len(te) == 3
    np.savez(p, x=rng.random((20, 5)), y=rng.integers(0, 3, 20))
    with pytest.raises(data.DataError, match="x must be"):
        data.load_npz(p)
    np.savez(p, images=rng.random((2, 1, 2, 2)))
    with pytest.raises(data.DataError, match="lacks"):
        data.load_npz(p)


def test_batches_and_normalisation():
    x = np.arange(10 * 2 * 2 * 2, dtype=np.float32).reshape(10, 2, 2, 2)
    y = np.arange(10)
    got = list(data.batches(x, y, 4, shuffle=True, rng=np.random.default_rng(1)))
    assert [len(b[1]) for b in got] == [4, 4, 2]
    assert sorted(np.concatenate([b[1] for b in got])) == list(range(10))
    mean, std = data.channel_stats(x)
    z = data.normalize(x, mean, std)
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-5)


# ------------------------------------------------------------------------------------- models


def test_builtin_models_shapes():
    for name, shape in (("digits-cnn", (1, 8, 8)), ("lenet", (3, 32, 32)), ("convnetjs-cifar", (3, 32, 32)),
                        ("lenet", (1, 8, 8)), ("convnetjs-cifar", (1, 8, 8))):
        m = models.build_model(name, shape, 10)
        out = m(pyconv.Tensor(np.zeros((2,) + shape, np.float32)))
        assert out.shape == (2, 10), name


def test_convnetjs_demo_architecture():
    m = models.build_model("convnetjs-cifar", (3, 32, 32), 10)
    convs = [l for l in m if isinstance(l, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(16, (5, 5)), (20, (5, 5)), (20, (5, 5))]
    assert sum(isinstance(l, nn.MaxPool2d) for l in m) == 3
    assert isinstance(m[-1], nn.Linear) and m[-1].in_features == 20 * 4 * 4


@pytest.mark.parametrize("ext", ["json", "toml"])
def test_model_file(tmp_path, ext):
    layers = [{"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "ReLU"},
              {"type": "MaxPool2d", "kernel_size": 2}, {"type": "Linear", "out_features": "classes"}]
    p = tmp_path / f"net.{ext}"
    if ext == "json":
        p.write_text(json.dumps(layers))
    else:
        p.write_text("\n".join(
            "[[layers]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in layer.items()) for layer in layers))
    m = models.build_model(str(p), (2, 6, 6), 5)
    assert m[0].in_channels == 2 and m[-1].in_features == 4 * 3 * 3 and m[-1].out_features == 5


@pytest.mark.parametrize("layers, match", [
    ([{"type": "Conv2d", "kernal_size": 3, "out_channels": 2}], r"layer 0 \(Conv2d\): unknown field\(s\) kernal_size"),
    ([{"type": "ReLU"}, {"type": "Conv2d", "out_channels": 2}], r"layer 1 \(Conv2d\): missing required field\(s\) kernel_size"),
    ([{"type": "Spline"}], r"layer 0: unknown type 'Spline'"),
    ([{"type": "Conv2d", "out_channels": 2, "kernel_size": 3, "in_channels": 7}], r"layer 0 \(Conv2d\): field in_channels=7"),
    ([{"type": "Conv2d", "out_channels": 2, "kernel_size": 30}], r"layer 0 \(Conv2d\):.*larger than the padded input"),
    ([{"type": "Conv2d", "out_channels": 2, "kernel_size": 3, "stride": 0}], r"layer 0 \(Conv2d\):.*stride"),
    (["ReLU"], r"layer 0: expected a table"),
])
def test_model_spec_errors(layers, match):
    with pytest.raises(models.ModelSpecError, match=match):
        models.build_model(layers, (3, 8, 8), 10)


# ------------------------------------------------------------------------------------- summary


def test_summary_lecture_example():
    s = summary(nn.Sequential(nn.Conv2d(3, 10, 5, stride=1, padding=2)), (3, 32, 32))
    (row,) = s.rows
    assert row.output_shape == (10, 32, 32) and row.params == 760 and s.total_params == 760
    assert row.flops == 2 * 10 * 32 * 32 * 3 * 5 * 5 and row.receptive_field == (5, 5)
    text = str(s)
    assert "3x32x32" in text and "10x32x32" in text and "760" in text


def test_summary_flags_non_integer_output_size():
    s = summary(nn.Sequential(nn.Conv2d(1, 1, 3, stride=3)), (1, 7, 7))
    notes = s.rows[0].notes
    assert len(notes) == 2 and "not an integer" in notes[0] and "last 1 input row(s)" in notes[0]
    assert "never covered" in str(s)
    assert not summary(nn.Sequential(nn.Conv2d(1, 1, 3, stride=2)), (1, 7, 7)).rows[0].notes


def test_summary_lenet_totals_match_parameters():
    m = models.build_model("lenet", (3, 32, 32), 10)
    s = summary(m, (3, 32, 32))
    assert s.total_params == m.num_parameters() == sum(p.size for p in m.parameters())
    assert [r.output_shape for r in s.rows][-1] == (10,)
    assert all(r.workspace_bytes >= 0 for r in s.rows)
    assert s.rows[3].receptive_field == (14, 14)  # 5x5, pool 2, then 5x5 at jump 2


# ------------------------------------------------------------------------------------- training


def small_digits(n_train=256, n_test=128):
    tr, te = data.load_digits()
    mean, std = data.channel_stats(tr.x)
    norm = lambda d, n: data.Dataset(data.normalize(d.x[:n], mean, std), d.y[:n], d.classes)  # noqa: E731
    return norm(tr, n_train), norm(te, n_test)


def train_steps(seed, steps=30):
    tr, _ = small_digits()
    pyconv.manual_seed(seed)
    model = models.build_model("digits-cnn", (1, 8, 8), 10)
    opt = make_optimizer("adam", model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    losses = []
    for step in range(steps):
        idx = rng.integers(0, len(tr), 32)
        loss = loss_fn(model(pyconv.Tensor(tr.x[idx])), tr.y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    return model, losses


def test_thirty_steps_decrease_the_loss():
    _, losses = train_steps(0)
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])


def test_fixed_seed_is_reproducible():
    m1, l1 = train_steps(3, steps=10)
    m2, l2 = train_steps(3, steps=10)
    assert l1 == l2
    for a, b in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


def test_fit_reaches_good_accuracy_and_reports_history():
    tr, te = small_digits(600, 200)
    pyconv.manual_seed(0)
    model = models.build_model("digits-cnn", (1, 8, 8), 10)
    hist = fit(model, tr, te, 4, make_optimizer("adam", model.parameters()), batch_size=32, seed=0)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert {"train_loss", "train_accuracy", "test_accuracy", "seconds", "images_per_second"} <= set(hist[0])
    assert hist[-1]["test_accuracy"] > 0.85
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]


def test_checkpoint_round_trip_is_exact(tmp_path):
    model, _ = train_steps(1, steps=5)
    opt = make_optimizer("sgd", model.parameters())
    x = small_digits()[1].x[:16]
    path = tmp_path / "ck.npz"
    save_checkpoint(path, model, opt, model_spec="digits-cnn", input_shape=[1, 8, 8], num_classes=10,
                    classes=[str(i) for i in range(10)])
    ck = load_checkpoint(path)
    assert set(ck["model"]) == set(model.state_dict())
    loaded, meta = load_model(path)
    model.eval()
    np.testing.assert_array_equal(loaded(pyconv.Tensor(x)).data, model(pyconv.Tensor(x)).data)
    assert meta["num_classes"] == 10
    # the file holds no pickles
    with np.load(path, allow_pickle=False) as f:
        assert all(f[k].dtype != object for k in f.files)


def test_checkpoint_into_mismatched_model_names_the_parameter(tmp_path):
    a = models.build_model("digits-cnn", (1, 8, 8), 10)
    b = models.build_model("digits-cnn", (1, 8, 8), 7)
    with pytest.raises(ValueError, match=r"'9.weight' has shape \(7, 256\) in the model but \(10, 256\)"):
        b.load_state_dict(a.state_dict())
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a pyconv checkpoint"):
        load_checkpoint(tmp_path / "bad.npz")


def test_evaluate_restores_training_mode():
    tr, te = small_digits(64, 64)
    model = models.build_model("digits-cnn", (1, 8, 8), 10)
    model.train()
    loss, acc = evaluate(model, te.x, te.y)
    assert model.training and 0 <= acc <= 1 and loss > 0
