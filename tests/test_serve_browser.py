"""The ``--serve`` page in a real browser: Debian's chromium driven by Playwright (``playwright
install`` cannot download browsers here, so the system one is used). Skips without either.

One served run (the digits, a small training set, many short epochs) is shared by the tests of
the live page; the end of training and Ctrl-C have a run of their own."""
import base64
import os
import shutil
import time

import pytest

from serve_util import ServedRun, digit_png

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = os.environ.get("PYCONV_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("no chromium (apt-get install -y chromium)", allow_module_level=True)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
LONG = ("--epochs", 300, "--train-size", 320, "--test-size", 60, "--threads", 1, "--no-plots", "--schedule", "none")


@pytest.fixture(scope="module")
def browser():
    # Under the sanitizer CI run, LD_PRELOAD carries the ASan runtime: it is meant for pyconv (the
    # served runs keep it), not for Playwright's driver and chromium, which would inherit it.
    preload = os.environ.pop("LD_PRELOAD", None)
    try:
        with sync_api.sync_playwright() as p:
            yield from _launch(p)
    finally:
        if preload is not None:
            os.environ["LD_PRELOAD"] = preload


def _launch(p):
    try:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    except Exception as exc:  # a chromium that cannot start here
        pytest.skip(f"chromium does not start: {str(exc).splitlines()[0]}")
    yield b
    b.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    r = ServedRun(*LONG, out=tmp_path_factory.mktemp("served"))
    yield r
    r.interrupt()
    r.close()


class Page:
    """A browser tab on the run's page that records console errors and failed requests."""

    def __init__(self, browser, url):
        self.errors = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("requestfailed", self._failed)
        self.requests = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(url)

    def _failed(self, request):
        if "ERR_ABORTED" not in (request.failure or ""):  # the event stream a reload or close cuts
            self.errors.append(f"request failed: {request.url} {request.failure}")

    def __getattr__(self, name):
        return getattr(self.page, name)

    def text(self, selector):
        return self.page.locator(selector).first.inner_text()

    def wait_for(self, js, timeout=20000):
        # a function, not a string: the page's CSP (no 'unsafe-eval') forbids Playwright's eval of strings
        self.page.wait_for_function(f"() => ({js})", timeout=timeout, polling=100)


@pytest.fixture
def page(browser, run):
    p = Page(browser, run.url)
    p.wait_for("document.querySelectorAll('.layer').length > 0 && document.querySelector('.barrow') !== null")
    yield p
    p.page.close()


def _canvas_urls(page, selector):
    return page.evaluate(f"Array.from(document.querySelectorAll({selector!r})).map(c => c.toDataURL())")


def test_page_loads_with_every_part_and_no_console_error(page, run):
    s = run.state()
    assert page.locator(".layer").count() == len(s["layers"]) == 11  # input + the 10 layers of digits-cnn
    conv = page.locator(".layer.Conv2d").first
    assert conv.locator(".title").inner_text() == "Conv2d (16x8x8)"
    meta = conv.locator(".meta").inner_text()
    assert "16 filters 3x3, stride 1, pad 1" in meta and "parameters: 160" in meta
    assert "max activation" in meta and "max gradient" in meta
    for part in ("act", "grad", "weights"):  # one canvas per part, one tile per map or filter
        assert conv.locator(f".part.{part} canvas").get_attribute("data-tiles") == "16"
    page.wait_for("document.querySelector('.part.wgrad canvas') !== null")
    assert page.locator(".layer.input .part.act canvas").get_attribute("data-tiles") == "1"
    assert page.locator(".sample").count() == 10 and page.locator(".sample .barrow").count() == 30
    assert page.locator(".sample .barrow.true").count() >= 1  # green bars: the true class among the top 3
    assert page.text("#run-header").startswith("pyconv train: digits")
    page.wait_for("document.querySelector('#epochs tbody tr') !== null", timeout=30000)
    assert page.evaluate("document.getElementById('loss-graph').toDataURL().length") > 3000  # a drawn chart
    assert page.text("#status") == "running"
    assert page.errors == []
    own = f"http://127.0.0.1:{run.port}/"
    assert page.requests and all(u.startswith(own) or u.startswith("data:") for u in page.requests)


def _changes(read, timeout=15.0):
    """Whether ``read()`` gives something else within ``timeout`` seconds (one update a second,
    snapshots on a time budget: slower under a sanitizer)."""
    first = read()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if read() != first:
            return True
    return False


def test_maps_filters_chart_and_predictions_change_over_time(page, run):
    step = run.state()["step"]
    assert _changes(lambda: _canvas_urls(page, "#loss-graph"))
    assert _changes(lambda: page.text("#s-seen"))
    assert run.state()["step"] > step
    # the layer boxes and test images on screen are redrawn with every snapshot
    page.locator(".layer.Conv2d >> nth=1").scroll_into_view_if_needed()
    assert _changes(lambda: _canvas_urls(page, ".layer.Conv2d canvas"))
    page.locator("#tests").scroll_into_view_if_needed()
    assert _changes(lambda: page.locator("#tests").inner_text())
    assert page.errors == []


def test_reloaded_page_shows_the_current_state_at_once(page, run):
    page.reload()
    page.wait_for("document.querySelectorAll('.layer canvas').length > 20 && "
                  "document.querySelector('#s-step').textContent !== '-'", timeout=5000)
    shown = int(page.text("#s-step").replace(",", ""))
    assert abs(shown - run.state()["step"]) < 2000
    assert page.errors == []


def test_pause_stops_the_steps_and_resume_restarts_them(page, run):
    page.click("#pause")
    page.wait_for("document.getElementById('status').textContent === 'paused'")
    assert page.text("#pause") == "Resume" and "paused after step" in page.text("#msg")
    s1 = run.state()
    assert s1["paused"]
    time.sleep(0.8)
    assert run.state()["step"] == s1["step"]
    page.click("#pause")
    page.wait_for("document.getElementById('status').textContent === 'running'")
    time.sleep(0.5)
    assert run.state()["step"] > s1["step"] and page.text("#pause") == "Pause"
    assert page.errors == []


def test_a_learning_rate_change_shows_in_state_and_a_bad_value_is_refused(page, run):
    page.fill("#in-lr", "0.0005")
    page.click("#apply")
    page.wait_for("document.getElementById('msg').textContent.startsWith('applied from step')")
    assert run.state()["lr"] == 0.0005
    page.fill("#in-lr", "-1")
    page.click("#apply")
    page.wait_for("document.getElementById('msg').classList.contains('error')")
    assert "lr -1 refused" in page.text("#msg") and "nothing was changed" in page.text("#msg")
    assert page.locator("#in-lr.bad").count() == 1
    assert run.state()["lr"] == 0.0005
    page.fill("#in-lr", "0.0005")
    page.fill("#in-momentum", "abc")
    page.click("#apply")
    page.wait_for("document.getElementById('msg').textContent.includes('momentum must be a number')")
    page.fill("#in-lr", "")
    page.fill("#in-momentum", "")
    assert [e for e in page.errors if "400" not in e] == []  # the refusals' 400s are logged by chromium


def test_posts_without_the_token_or_from_another_origin_are_refused(browser, page, run):
    no_token = page.evaluate("""async () => {
        const r = await fetch('/api/pause', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                             body: '{}'});
        return [r.status, (await r.json()).error];
    }""")
    assert no_token[0] == 403 and "X-Pyconv-Token" in no_token[1]
    # the same server under another name is another origin: its page's posts are refused
    other = Page(browser, f"http://localhost:{run.port}/")
    try:
        result = other.evaluate(f"""async () => {{
            const token = document.querySelector('meta[name="pyconv-token"]').content;
            const out = [];
            try {{   // a simple request reaches the server, which refuses it for its Origin
                await fetch('http://127.0.0.1:{run.port}/api/pause', {{method: 'POST', mode: 'no-cors',
                    headers: {{'Content-Type': 'text/plain'}}, body: '{{}}'}});
                out.push('sent');
            }} catch (e) {{ out.push('blocked'); }}
            try {{   // with the token header the browser must ask first (a preflight), and is not allowed
                await fetch('http://127.0.0.1:{run.port}/api/pause', {{method: 'POST',
                    headers: {{'Content-Type': 'application/json', 'X-Pyconv-Token': token}}, body: '{{}}'}});
                out.push('sent');
            }} catch (e) {{ out.push('blocked'); }}
            return out;
        }}""")
    finally:
        other.page.close()
    assert result[1] == "blocked"
    time.sleep(0.3)
    assert run.state()["paused"] is False


def test_an_uploaded_image_is_classified(page, run, tmp_path):
    png, label = digit_png(3)
    path = tmp_path / "digit.png"
    path.write_bytes(png)
    page.set_input_files("#upload", str(path))
    page.wait_for("document.querySelector('#upload-result .barrow') !== null")
    assert page.locator("#upload-result .barrow").count() == 3
    assert "32x32 (HxW) 8-bit gray, resized to 8x8, inverted" in page.text("#upload-result")
    assert page.get_attribute("#upload-result", "data-top") in [str(i) for i in range(10)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    page.set_input_files("#upload", str(bad))
    page.wait_for("document.getElementById('msg').textContent.includes('cannot read the upload')")
    assert [e for e in page.errors if "400" not in e] == []


def test_clicking_a_test_image_shows_it_in_the_network_view(page, run):
    page.click(".sample >> nth=4")
    page.wait_for("document.querySelector('.sample.selected').dataset.index === '4'")
    page.wait_for("document.getElementById('net-caption').textContent.includes('true class 4')")
    assert run.state()["snapshot"]["image"] == 4
    page.click(".sample >> nth=0")
    page.wait_for("document.getElementById('net-caption').textContent.includes('true class 0')")


def test_end_of_training_then_ctrl_c_ends_cleanly(browser, tmp_path):
    out = tmp_path / "run"
    r = ServedRun("--epochs", 2, "--train-size", 96, "--test-size", 40, "--threads", 1, out=out)
    try:
        p = Page(browser, r.url)
        p.wait_for("document.getElementById('status').textContent === 'done'", timeout=60000)
        assert p.text("#status-text") == "done; serving until Ctrl-C"
        assert p.locator("#pause").is_disabled() and not p.locator("#save").is_disabled()
        assert p.text("#progress-text") == "all 2 epochs done"
        assert p.errors == []
        assert r.interrupt() == 0
        p.wait_for("document.getElementById('status').textContent === 'disconnected'", timeout=10000)
        assert {"checkpoint.npz", "best.npz", "metrics.json", "curves.png", "filters.png", "activations.png"} <= \
            set(os.listdir(out))
        assert "stopped serving" in "".join(r.lines)
        p.page.close()
    finally:
        r.close()


def _unused(_):  # keep base64 imported for readers who decode snapshots by hand
    return base64
