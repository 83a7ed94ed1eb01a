"""``pyconv train --serve`` without a browser: the server (raw HTTP requests), its security rules,
the controls' checks, the /state schema, server-sent events, and the command line around it
(port in use, --host, the end of training, Ctrl-C). The page itself: test_serve_browser.py."""
import json
import os
import re
import socket
import struct
import threading
import time
import zlib

import numpy as np
import pytest

import pyconv
from pyconv import data, nn
from pyconv.checkpoint import load_model, save_checkpoint
from pyconv.serve import attach, open_server
from pyconv.serve.controls import ControlError, check_hyperparameters, decode_upload, parse_json
from pyconv.serve.server import STATIC
from pyconv.train import Trainer, make_optimizer
from serve_util import ServedRun, digit_png, get, png_bytes, post, request

STATE_KEYS = {"run", "status", "message", "paused", "epoch", "epochs", "batch", "batches_per_epoch", "step",
              "examples_seen", "loss", "train_accuracy", "l2_loss", "test_loss", "test_accuracy",
              "forward_ms_per_example", "backward_ms_per_example", "lr", "momentum", "weight_decay", "history",
              "saved", "serve_seconds", "snapshot", "layers", "predictions"}
LAYER_KEYS = {"name", "type", "volume", "params", "filter", "stride", "padding", "filters", "activation", "gradient"}


def _tiny(epochs, seed=0):
    train, test = data.load_digits()
    train, test = train.subset(96), test.subset(60)
    pyconv.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 10))
    opt = make_optimizer("sgd", model.parameters(), 0.05)
    return model, opt, Trainer(model, train, test, epochs, opt, batch_size=16, seed=seed)


class Live:
    """A Trainer running in a thread with a LiveSession, served on a free port."""

    def __init__(self, out, epochs=100000, finish=False):
        self.model, self.opt, self.trainer = _tiny(epochs)
        self.server = open_server("127.0.0.1", 0)
        self.port = self.server.port
        self.stop = threading.Event()
        meta = dict(dataset="digits", normalize=dict(mean=[0.0], std=[1.0]))
        opts = dict(model="tiny", dataset="digits", optimizer="sgd", out=str(out))
        save = (lambda path: save_checkpoint(path, self.model, self.opt, input_shape=(1, 8, 8)))
        self.session = attach(self.server, self.trainer, meta, opts, save=save, should_stop=self.stop.is_set)
        self.token = self.server.token
        self.result = None

        def train():
            self.result = self.trainer.run(should_stop=self.stop.is_set, callbacks=[self.session])
            if finish:
                self.session.finish("done", "done; serving until Ctrl-C")
                self.session.wait_until(self.stop.is_set)
        self.thread = threading.Thread(target=train, daemon=True)
        self.thread.start()

    def state(self):
        status, _, body = get(self.port, "/state")
        assert status == 200
        return json.loads(body)

    def post(self, path, body=None, **kw):
        kw.setdefault("token", self.token)
        return post(self.port, path, body, **kw)

    def wait(self, cond, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.state()
            if cond(s):
                return s
            time.sleep(0.05)
        raise AssertionError(f"timed out; last state {s['status']} step {s['step']}")

    def close(self):
        self.stop.set()
        self.thread.join(30)
        self.server.close()


@pytest.fixture
def live(tmp_path):
    lv = Live(tmp_path)
    lv.wait(lambda s: s["step"] > 2)
    yield lv
    lv.close()


# ------------------------------------------------------------------------------ the page and its files


def test_page_carries_the_token_and_a_strict_content_security_policy(live):
    status, headers, body = get(live.port, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert f'content="{live.token}"' in body and "__PYCONV_TOKEN__" not in body
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
    for name, ctype in STATIC.items():
        status, headers, text = get(live.port, f"/static/{name}")
        assert status == 200 and headers["Content-Type"] == ctype and len(text) > 1000


def test_static_files_reference_nothing_outside_the_server():
    from importlib import resources

    folder = resources.files("pyconv.serve").joinpath("static")
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["app.js", "index.html", "style.css"]
    for name in names:
        text = folder.joinpath(name).read_text("utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), name  # no CDN, no host
        assert "@import" not in text and "url(" not in text.replace("data:,", ""), name


@pytest.mark.parametrize("path", [
    "/static/../server.py", "/static/%2e%2e/server.py", "/static/..%2fserver.py", "/static/%2e%2e%2f__init__.py",
    "/static/", "/static", "/static/index.html/../app.js", "/static//etc/passwd", "//etc/passwd", "/../../etc/passwd",
    "/static/app.js%00.html", "/static/APP.JS", "/static/./app.js", "/server.py", "/static/app.js/",
])
def test_static_files_come_only_from_the_fixed_list(live, path):
    status, _, body = get(live.port, path)
    assert status == 404, (path, body[:200])
    assert "import" not in body and "root:" not in body


def test_a_request_naming_another_host_is_refused(live):
    """DNS rebinding: a page of evil.example resolved to 127.0.0.1 must not read the token or the state."""
    for path in ("/", "/state", "/events"):
        status, _, body = get(live.port, path, headers={"Host": f"evil.example:{live.port}"})
        assert status == 421 and live.token not in body
    for host in (f"localhost:{live.port}", f"127.0.0.1:{live.port}"):
        assert get(live.port, "/state", headers={"Host": host})[0] == 200


# ------------------------------------------------------------------------------ /state


def test_state_has_the_documented_schema_and_advances(live):
    s = live.state()
    assert set(s) == STATE_KEYS
    assert s["status"] == "running" and s["paused"] is False and s["epochs"] == 100000
    assert s["batches_per_epoch"] == 6 and s["lr"] == pytest.approx(0.05) and s["momentum"] == pytest.approx(0.9)
    assert [layer["type"] for layer in s["layers"]] == ["input", "Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"]
    assert [layer["volume"] for layer in s["layers"]] == ["1x8x8", "4x8x8", "4x8x8", "4x4x4", "64", "10"]
    conv = s["layers"][1]
    assert set(conv) == LAYER_KEYS and conv["params"] == 40 and conv["filter"] == "3x3" and conv["stride"] == "1"
    assert conv["activation"]["min"] <= conv["activation"]["max"] and conv["gradient"]["max"] is not None
    assert len(s["predictions"]) == 10 and [p["label"] for p in s["predictions"]] == [str(i) for i in range(10)]
    assert all(len(p["top"]) == 3 and 0 <= p["top"][0]["p"] <= 1 for p in s["predictions"])
    later = live.wait(lambda t: t["step"] > s["step"] + 20 and t["snapshot"]["step"] > s["snapshot"]["step"])
    assert later["examples_seen"] > s["examples_seen"] and later["epoch"] >= s["epoch"]
    assert later["history"] and set(later["history"][0]) >= {"epoch", "train_loss", "test_accuracy", "seconds"}


# ------------------------------------------------------------------------------ the controls' rules


def test_posts_without_the_token_or_from_another_origin_are_refused(live):
    before = live.state()
    refused = [
        live.post("/api/pause", token=None),  # no token
        live.post("/api/pause", token="wrong"),
        live.post("/api/pause", token=live.token + "x"),
        live.post("/api/pause", origin=None),  # no Origin header (a script, or an old browser)
        live.post("/api/pause", origin="http://evil.example"),
        live.post("/api/pause", origin=f"http://localhost:{live.port}"),  # another origin of this very server
        live.post("/api/pause", origin="null"),
        live.post("/api/pause", headers={"Sec-Fetch-Site": "cross-site"}),
        live.post("/api/set", {"lr": 1.0}, token=None),
        live.post("/api/save", token=None),
    ]
    for status, body in refused:
        assert status == 403 and body["ok"] is False and "refused" in body["error"]
    after = live.state()
    assert after["paused"] is False and after["lr"] == before["lr"] and after["saved"] == []
    assert after["step"] > before["step"]  # still training


@pytest.mark.parametrize("body, match", [
    ({"lr": -0.1}, r"lr -0.1 refused: the learning rate must be in \(0, 10\]"),
    ({"lr": 0}, "lr 0 refused"),
    ({"lr": 1e9}, "lr 1e\\+09 refused"),
    ({"lr": "0.1"}, 'lr must be a number, got "0.1"'),
    ({"lr": True}, "lr must be a number, got true"),
    ({"lr": None}, "lr must be a number, got null"),
    ({"lr": [0.1]}, "lr must be a number"),
    ({"momentum": 1.0}, "momentum 1 refused"),
    ({"momentum": -0.5}, "momentum -0.5 refused"),
    ({"weight_decay": -1e-4}, "weight_decay -0.0001 refused"),
    ({"lr": 0.01, "momentum": 2}, "momentum 2 refused"),  # one bad value: nothing changes
    ({"learning_rate": 0.1}, "unknown field"),
    ({}, "nothing to change"),
    ([0.1], "expected a JSON object"),
])
def test_bad_control_values_are_refused_and_change_nothing(live, body, match):
    before = live.state()
    status, reply = live.post("/api/set", body)
    assert status == 400 and reply["ok"] is False and re.search(match, reply["error"]), reply
    after = live.state()
    assert (after["lr"], after["momentum"], after["weight_decay"]) == \
        (before["lr"], before["momentum"], before["weight_decay"])


@pytest.mark.parametrize("raw, ctype, status, match", [
    (b'{"lr": NaN}', "application/json", 400, "not JSON"),
    (b'{"lr": Infinity}', "application/json", 400, "not JSON"),
    (b'{"lr": 1e999}', "application/json", 400, "must be finite"),
    (b"lr=0.1", "application/json", 400, "not JSON"),
    (b'{"lr": 0.1}', "text/plain", 415, "application/json"),
    (b'{"lr": 0.1}', "application/x-www-form-urlencoded", 415, "application/json"),
    (b"\xff\xfe", "application/json", 400, "not JSON"),
    (b" " * 5000, "application/json", 413, "at most 4,096"),
])
def test_malformed_bodies_are_refused(live, raw, ctype, status, match):
    got, reply = live.post("/api/set", raw, ctype=ctype)
    assert got == status and re.search(match, reply["error"]), reply
    assert live.state()["lr"] == pytest.approx(0.05)


def test_a_new_learning_rate_applies_from_the_next_step(live):
    status, reply = live.post("/api/set", {"lr": 0.01, "momentum": 0.5, "weight_decay": 1e-4})
    assert status == 200 and reply["ok"] and reply["lr"] == 0.01 and reply["from_step"] >= 1
    s = live.state()
    assert (s["lr"], s["momentum"], s["weight_decay"]) == (0.01, 0.5, 1e-4)
    assert live.opt.lr == 0.01 and live.opt.defaults["momentum"] == 0.5


def test_pause_stops_the_steps_and_resume_restarts_them(live):
    status, reply = live.post("/api/pause")
    assert status == 200 and reply["paused"] is True
    s = live.state()
    assert s["paused"] and s["status"] == "paused" and s["step"] == reply["step"]
    time.sleep(0.6)
    assert live.state()["step"] == reply["step"]
    assert live.post("/api/set", {"lr": 0.02})[0] == 200  # applied while paused, from the next step
    status, reply = live.post("/api/resume")
    assert status == 200 and reply["paused"] is False
    resumed = live.wait(lambda t: t["step"] > reply["step"] + 5)
    assert resumed["status"] == "running" and resumed["lr"] == 0.02


def test_save_writes_a_checkpoint_of_the_model_as_it_is(live):
    status, reply = live.post("/api/save")
    assert status == 200 and os.path.isfile(reply["path"]) and reply["path"].endswith(f"step{reply['step']}.npz")
    model, _ = load_model(reply["path"])
    assert model.num_parameters() == live.model.num_parameters()
    assert live.state()["saved"][-1]["path"] == reply["path"]


def test_select_chooses_the_image_of_the_layer_view(live):
    status, reply = live.post("/api/select", {"image": 3})
    assert status == 200 and reply["image"] == 3
    s = live.state()
    assert s["snapshot"]["image"] == 3 and s["snapshot"]["label"] == "3"
    for bad, match in (({"image": 10}, "out of range"), ({"image": -1}, "out of range"), ({"image": "1"}, "integer"),
                       ({"image": 1.5}, "integer"), ({}, "index")):
        status, reply = live.post("/api/select", bad)
        assert status == 400 and match in reply["error"]


def test_unknown_routes_and_methods(live):
    assert live.post("/api/explode")[0] == 404
    assert request(live.port, "PUT", "/api/pause", b"{}")[0] == 501
    assert request(live.port, "DELETE", "/state")[0] == 501


# ------------------------------------------------------------------------------ uploads


def test_an_uploaded_image_is_classified_as_predict_would(live):
    png, label = digit_png(5)
    status, reply = live.post("/api/predict?invert=1", png, ctype="image/png")
    assert status == 200, reply
    assert reply["note"].startswith("32x32 (HxW) 8-bit gray, resized to 8x8") and reply["invert"] is True
    assert len(reply["top"]) == 5 and sum(t["p"] for t in reply["top"]) <= 1 + 1e-9
    assert reply["shape"] == [8, 8, 1]
    # the same input and model as `pyconv predict`'s code path gives the same probabilities
    from pyconv.images import load_image

    path = os.path.join(os.path.dirname(live.session.opts["out"]), "digit.png")
    with open(path, "wb") as f:
        f.write(png)
    x, note = load_image(path, (1, 8, 8), invert=True)
    assert note == reply["note"]


def _png_header_only(width, height):
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("make, ctype, status, match", [
    (lambda: b"", "image/png", 400, "empty"),
    (lambda: b"not an image at all", "image/png", 400, "cannot read the upload"),
    (lambda: png_bytes(np.zeros((8, 8)))[:40], "image/png", 400, "cannot read the upload"),  # truncated
    (lambda: _png_header_only(6000, 6000), "image/png", 413, "6000x6000 pixels; at most 16,777,216 pixels"),
    (lambda: _png_header_only(30000, 30000), "image/png", 413, "at most 16,777,216 pixels"),  # PIL's own bomb check
    (lambda: b"II*\x00" + b"\x00" * 100, "image/tiff", 400, "cannot read the upload"),  # not an allowed format
    (lambda: b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml", 400, "cannot read the upload"),
    (lambda: png_bytes(np.zeros((8, 8))), "text/plain", 415, "image/"),
])
def test_bad_uploads_are_refused(live, make, ctype, status, match):
    got, reply = live.post("/api/predict", make(), ctype=ctype)
    assert got == status and match in reply["error"], reply


def test_an_upload_over_the_size_limit_is_refused_before_it_is_read(live):
    from pyconv.serve.controls import MAX_UPLOAD_BYTES

    conn = socket.create_connection(("127.0.0.1", live.port), timeout=10)
    try:
        head = (f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\nOrigin: http://127.0.0.1:{live.port}\r\n"
                f"X-Pyconv-Token: {live.token}\r\nContent-Type: image/png\r\n"
                f"Content-Length: {MAX_UPLOAD_BYTES + 1}\r\n\r\n")
        conn.sendall(head.encode())  # and no body at all
        reply = b""
        while b"}" not in reply:  # the whole JSON answer, then the server closes
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
        reply = reply.decode()
    finally:
        conn.close()
    assert reply.startswith("HTTP/1.1 413") and "at most 8,388,608" in reply


def test_decode_upload_checks_size_before_decoding():
    with pytest.raises(ControlError, match="pixels"):
        decode_upload(_png_header_only(5000, 5000), (1, 8, 8), False)
    x, note = decode_upload(png_bytes(np.ones((16, 16, 3)) * 0.5), (3, 8, 8), False)
    assert x.shape == (3, 8, 8) and "resized to 8x8" in note


def test_check_hyperparameters_and_parse_json_directly():
    assert check_hyperparameters({"lr": 1, "momentum": 0, "weight_decay": 0}) == dict(lr=1.0, momentum=0.0,
                                                                                      weight_decay=0.0)
    with pytest.raises(ControlError, match="finite"):
        check_hyperparameters({"lr": float("nan")})
    with pytest.raises(ControlError, match="unknown field"):
        parse_json(b'{"a": 1}', ("lr",))


# ------------------------------------------------------------------------------ server-sent events


def _read_events(port, n_events, timeout=20):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
    buf, events = b"", []
    deadline = time.monotonic() + timeout
    while len(events) < n_events and time.monotonic() < deadline:
        buf += sock.recv(1 << 20)
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            name = re.search(rb"^event: (\w+)$", block, re.M)
            payload = re.search(rb"^data: (.*)$", block, re.M)
            if name and payload:
                events.append((name.group(1).decode(), json.loads(payload.group(1))))
    return sock, events


def test_events_send_the_run_then_stats_and_snapshots(live):
    sock, events = _read_events(live.port, 5)
    sock.close()
    names = [e[0] for e in events]
    assert names[0] == "info" and "stats" in names and "snapshot" in names
    info = events[0][1]
    assert info["id"] == live.session.run_id and len(info["sample"]) == 10 and info["layers"][1]["type"] == "Conv2d"
    stats = next(e[1] for e in events if e[0] == "stats")
    # /state's object, less the history, which comes beside it when it grows
    assert stats["points"] and set(stats["stats"]) == STATE_KEYS - {"history"} and stats["history"] is not None
    snap = next(e[1] for e in events if e[0] == "snapshot")
    conv = snap["layers"][1]
    assert conv["act"]["shape"] == [4, 8, 8] and conv["weights"]["shape"] == [4, 1, 3, 3]
    import base64

    assert len(base64.b64decode(conv["act"]["data"])) == 4 * 8 * 8  # one byte per value
    assert conv["act"]["min"] <= conv["act"]["max"]


def test_pages_that_vanish_or_never_read_do_not_stop_training(live):
    stuck = []
    for _ in range(3):  # connected, never reading
        s = socket.create_connection(("127.0.0.1", live.port), timeout=5)
        s.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n\r\n".encode())
        stuck.append(s)
    for _ in range(3):  # connected, then gone mid-stream
        sock, _ = _read_events(live.port, 2)
        sock.close()
    step = live.state()["step"]
    live.wait(lambda t: t["step"] > step + 30)
    for s in stuck:
        s.close()


def test_a_served_run_trains_bitwise_as_one_without_the_page(tmp_path):
    lv = Live(tmp_path, epochs=3, finish=True)
    lv.wait(lambda s: s["status"] == "done")
    served = [p.data.copy() for p in lv.model.parameters()]
    lv.close()
    model, _, trainer = _tiny(3)
    trainer.run()
    for a, b in zip(served, model.parameters()):
        np.testing.assert_array_equal(a, b.data)


def test_after_training_controls_say_so_and_uploads_still_work(tmp_path):
    lv = Live(tmp_path, epochs=1, finish=True)
    try:
        s = lv.wait(lambda t: t["status"] == "done")
        assert s["message"] == "done; serving until Ctrl-C" and s["epoch"] == 1
        for path, body in (("/api/pause", {}), ("/api/set", {"lr": 0.1})):
            status, reply = lv.post(path, body)
            assert status == 409 and "training is done" in reply["error"]
        status, reply = lv.post("/api/predict", digit_png(0)[0], ctype="image/png")
        assert status == 200 and reply["top"]
        assert lv.post("/api/save")[0] == 200
    finally:
        lv.close()


# ------------------------------------------------------------------------------ the command line

TINY = ("--epochs", 1, "--train-size", 64, "--test-size", 40, "--threads", 1)


def test_cli_end_of_training_serves_until_ctrl_c_then_exits_0(tmp_path):
    run = ServedRun(*TINY, "--no-plots", out=tmp_path / "run")
    try:
        run.wait_line(r"done; serving http://127\.0\.0\.1:\d+/ until Ctrl-C")
        s = run.state()
        assert s["status"] == "done" and s["message"] == "done; serving until Ctrl-C"
        assert run.interrupt() == 0
        assert {"checkpoint.npz", "best.npz", "metrics.json"} <= set(os.listdir(tmp_path / "run"))
        assert "stopped serving" in "".join(run.lines) and "Traceback" not in "".join(run.err)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", run.port), timeout=2)
    finally:
        run.close()


def test_cli_ctrl_c_while_paused_stops_like_a_plain_run(tmp_path):
    run = ServedRun("--epochs", 200, "--train-size", 64, "--test-size", 40, "--threads", 1, "--batch-size", 8,
                    "--no-plots", out=tmp_path / "run")
    try:
        deadline = time.monotonic() + 60
        while run.state()["step"] < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        status, reply = run.post("/api/pause")
        assert status == 200
        assert run.post("/api/set", {"momentum": 0.5})[0] == 200
        assert run.interrupt() == 130
        err = "".join(run.err)
        assert "resume with: pyconv train --resume" in err and "Traceback" not in err
    finally:
        run.close()
    again = ServedRun("--resume", tmp_path / "run")  # --serve, --port beside --resume: they change no result
    try:
        s = again.state()
        assert s["step"] >= reply["step"] and s["momentum"] == 0.5  # the page's change was saved with the run
        assert "resuming" in "".join(again.lines)
        assert again.interrupt() == 130
    finally:
        again.close()


def test_cli_port_in_use_is_one_line(tmp_path):
    from pyconv import cli

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        from serve_util import ENV
        import subprocess
        import sys

        r = subprocess.run([sys.executable, "-m", "pyconv", "train", "--serve", "--port", str(port), "--out",
                            str(tmp_path / "x")], capture_output=True, text=True, env=ENV, timeout=120,
                           cwd=tmp_path)
    finally:
        holder.close()
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0] == (f"pyconv train: error: --port {port} is in use on 127.0.0.1 (another pyconv train --serve?): "
                        "choose another with --port N, or --port 0 for any free one")
    assert r.stdout == "" and not (tmp_path / "x").exists()
    assert cli.main(["train", "--port", "8000"]) == 1  # --port without --serve


def test_cli_serve_options_are_checked(capsys):
    from pyconv import cli

    assert cli.main(["train", "--host", "0.0.0.0"]) == 1
    assert "--host only apply with --serve" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--serve", "--port", "70000"])
    assert e.value.code == 2 and "port number from 0" in capsys.readouterr().err
    assert cli.main(["train", "--serve", "--host", "no-such-host.invalid", "--port", "0"]) == 1
    assert "--host no-such-host.invalid" in capsys.readouterr().err


def test_cli_another_host_prints_a_warning(capsys):
    from types import SimpleNamespace

    from pyconv.cli_train import _open_server

    server = _open_server(SimpleNamespace(serve=True, host="0.0.0.0", port=0))
    try:
        err = capsys.readouterr().err
        assert err.startswith("pyconv train: warning: --host 0.0.0.0 makes the live page reachable from other "
                              "machines")
        assert server.allowed_hosts is None  # every name: the token and origin checks still apply
    finally:
        server.close()
    server = _open_server(SimpleNamespace(serve=True, host="127.0.0.1", port=0))
    server.close()
    assert capsys.readouterr().err == ""
