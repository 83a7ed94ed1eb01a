"""Helpers of the ``--serve`` tests: a served CLI run in a subprocess, raw HTTP requests (exact
paths and headers, as an attacker would send them), images to upload."""
import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ENV = dict(os.environ, PYTHONWARNINGS="ignore", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
URL_LINE = re.compile(r"watch it learn at (http://[^ ]+/) ")


class ServedRun:
    """``pyconv train --serve --port 0 ARGS`` in a subprocess; ``url``/``port`` once it listens."""

    def __init__(self, *args, out=None, timeout=120):
        self.out = out
        cmd = [sys.executable, "-m", "pyconv", "train", "--serve", "--port", "0", "--quiet", *map(str, args)]
        if out is not None:
            cmd += ["--out", str(out)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=tempfile.gettempdir(), env=ENV)
        self.lines, self.err = [], []
        self.url = None
        self._seen = threading.Condition()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True).start()
        line = self.wait_line(URL_LINE, timeout)
        self.url = URL_LINE.search(line).group(1)
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))
        self.token = re.search(r'name="pyconv-token" content="([^"]+)"', get(self.port, "/")[2]).group(1)

    def _read(self, stream, sink):
        for line in stream:
            with self._seen:
                sink.append(line)
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_line(self, pattern, timeout=120):
        pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for line in self.lines:
                    if pattern.search(line):
                        return line
                if self.proc.poll() is not None and not any(pattern.search(x) for x in self.lines):
                    time.sleep(0.2)
                    raise AssertionError(f"exited {self.proc.returncode} before {pattern.pattern!r}:\n"
                                         + "".join(self.lines) + "".join(self.err))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {pattern.pattern!r} within {timeout} s:\n" + "".join(self.lines))
                self._seen.wait(min(left, 0.5))

    def state(self):
        status, _, body = get(self.port, "/state")
        assert status == 200, body
        return json.loads(body)

    def post(self, path, body=None, **kw):
        return post(self.port, path, body, token=self.token, **kw)

    def interrupt(self, timeout=60):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout)
        time.sleep(0.2)  # the reader threads drain the pipes
        return self.proc.returncode

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def request(port, method, path, body=None, headers=None, timeout=30):
    """(status, headers, text) of one raw request: the path is sent exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        hdrs = {"Host": f"127.0.0.1:{port}"}
        hdrs.update(headers or {})
        for k, v in hdrs.items():
            if v is not None:
                conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def get(port, path, headers=None):
    return request(port, "GET", path, headers=headers)


def post(port, path, body=None, token=None, origin="own", ctype="application/json", headers=None):
    """A POST as the page sends it (own origin, token, JSON); pass origin=/token= to vary that."""
    data = body if isinstance(body, (bytes, bytearray)) else json.dumps({} if body is None else body).encode()
    hdrs = {"Content-Type": ctype, "X-Pyconv-Token": token,
            "Origin": f"http://127.0.0.1:{port}" if origin == "own" else origin}
    hdrs.update(headers or {})
    status, _, text = request(port, "POST", path, data, hdrs)
    return status, json.loads(text) if text.startswith("{") else text


def png_bytes(array):
    """An 8-bit PNG of ``array`` (H, W) or (H, W, 3) in [0, 1]."""
    from PIL import Image

    a = np.rint(np.clip(array, 0, 1) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def digit_png(index=0, size=32):
    """A test-set digit as a person would draw it (dark strokes on white), enlarged to ``size``."""
    from PIL import Image

    from pyconv import data

    _, test = data.load_digits()
    img = 1.0 - test.x[index, 0]
    big = np.asarray(Image.fromarray((img * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)) / 255.0
    return png_bytes(big), int(test.y[index])
