"""Re-makes docs/serve.png: the ``pyconv train --serve`` page mid-run, with headless chromium.

    python docs/make_serve_png.py [docs/serve.png]

Trains the default digits run (more epochs, so that it is still running), uploads a test digit
drawn dark on white, pauses, and photographs the top of the page (stats, controls, loss, the
first layers); then Ctrl-C ends the run.
"""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from playwright.sync_api import sync_playwright  # noqa: E402

from serve_util import ServedRun, digit_png  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]


def main(out):
    with tempfile.TemporaryDirectory() as tmp:
        run = ServedRun("--epochs", 40, out=os.path.join(tmp, "run"))
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1750})
                page.goto(run.url)
                while run.state()["epoch"] < 9:
                    time.sleep(0.2)
                from pyconv import data

                seven = int(next(i for i, y in enumerate(data.load_digits()[1].y) if y == 7))
                png, _ = digit_png(seven)
                path = os.path.join(tmp, "seven.png")
                with open(path, "wb") as f:
                    f.write(png)
                page.set_input_files("#upload", path)
                page.wait_for_function("() => document.querySelector('#upload-result .barrow') !== null",
                                       polling=100)
                page.click("#pause")
                page.wait_for_function("() => document.getElementById('status').textContent === 'paused'",
                                       polling=100)
                time.sleep(1.0)
                page.screenshot(path=out, clip=dict(x=0, y=0, width=1400, height=1750))
                browser.close()
        finally:
            run.interrupt()
            run.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "serve.png"))
