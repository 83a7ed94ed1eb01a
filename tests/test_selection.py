"""The "auto" algorithm choice over a deterministic sweep of several thousand layer shapes, pinned.

The choice was recorded from the if-chain that preceded the selection table (issue 13) and must not
change when the rule is restated: a change to the thresholds is a deliberate edit of RECORDED (run
this file as a script to print the new value) together with the measurements in
benchmarks/RESULTS.md (re-recorded once since: issue 14's row for one image on a plane under
64 pixels with > 64 channels in and out, which moved 4 choices from direct to im2col). One character per (shape, direction): d(irect), i(m2col), w(inograd), or x
when the shape is invalid (the C++ validation raises).
"""
import base64
import json
import os
import random
import subprocess
import sys
import tempfile
import zlib

import pytest

import pyconv

DIRECTIONS = ("fwd", "bwd_data", "bwd_weight")
CODE = {"direct": "d", "im2col": "i", "winograd": "w"}
MODES = ("zeros", "reflect", "replicate", "circular")


def sweep(count=6000, seed=13):
    """(input shape, weight shape, stride, pads, dilation, groups, mode code) for `count` layers."""
    rng = random.Random(seed)
    pick = rng.choice
    out = []
    for _ in range(count):
        n = pick((1, 1, 2, 4, 8, 8, 16, 17, 32, 64, 128))
        kind = rng.random()
        if kind < 0.15:  # depthwise, channel multiplier kg
            c = pick((3, 8, 16, 32, 64, 96, 256))
            g, cg, kg = c, 1, pick((1, 1, 2, 3, 4, 8, 9, 16, 32))
        elif kind < 0.25:  # grouped
            g = pick((2, 4, 8, 32))
            cg, kg = pick((1, 2, 4, 8, 16, 32)), pick((1, 2, 3, 4, 8, 16, 32))
        else:
            g = 1
            cg = pick((1, 2, 3, 4, 5, 8, 16, 20, 32, 48, 64, 128, 256, 512, 513))
            kg = pick((1, 2, 3, 4, 6, 8, 9, 12, 16, 17, 20, 24, 32, 33, 48, 64, 128, 256, 512))
        h = pick((1, 3, 4, 7, 8, 12, 14, 16, 28, 32, 56, 112, 224))
        w = h if rng.random() < 0.7 else pick((3, 7, 9, 16, 28, 31, 56))
        r = pick((1, 1, 2, 3, 3, 3, 3, 5, 5, 6, 7, 11))
        s = r if rng.random() < 0.85 else pick((1, 3, 5, 7))
        st = pick(((1, 1),) * 6 + ((2, 2), (2, 2), (3, 3), (4, 4), (1, 2), (2, 1)))
        dil = pick(((1, 1),) * 8 + ((2, 2), (2, 2), (3, 3), (1, 2)))
        if rng.random() < 0.8:
            ph, pw = pick((0, 0, 1, 1, 2, 3, 5)), pick((0, 1, 1, 2, 3))
            if rng.random() < 0.6:
                pw = ph
            pads = (ph, ph, pw, pw)
        else:
            pads = tuple(pick((0, 1, 2)) for _ in range(4))
        mode = 0 if rng.random() < 0.7 else rng.randrange(1, 4)
        out.append(((n, g * cg, h, w), (g * kg, cg, r, s), st, pads, dil, g, mode))
    return out


def choices():
    chars = []
    for x, wt, st, pads, dil, g, mode in sweep():
        for d in range(len(DIRECTIONS)):
            try:
                chars.append(CODE[pyconv._core.conv2d_choose_algo(x, wt, st, pads, dil, g, mode, d)])
            except ValueError:
                chars.append("x")
    return "".join(chars)


def pack(text):
    return base64.b64encode(zlib.compress(text.encode(), 9)).decode()


def unpack(blob):
    return zlib.decompress(base64.b64decode(blob)).decode()


RECORDED = (
    "eNp9XFl2bDkI2yw/WgFv+V0p2yAJqnP65FWSO3hgEEJuRAD49+/f918g8Pnw+fHzKTPxvv59vz5/PB8S+Xfh9554l8X36++y"
    "zO/F9zf3snfv56915XnyvRffywJvPOfOdxc9qr6+95yH4wyvZlFP7sHfN96H1NtrXvxkuh7nJe8hd6af73+L8J5JQ6K77tju"
    "uM9o4118xxqoBXl3oUYY7/a/Z0Y/rRakli7eCt53oVf4/vk7x4zarP63Rlez/nw/VwYviF5AY74POgZTo6LV6Fnfez8/5hlV"
    "nrF+FpPX8Myp9ii+fz1bgF6ivCN/y/Uu+Nua+jFotc8O8vjNqmop6cMzZMR57Fm0v8X82nnmNYPe8e9S1FaWidYuvH1suz0D"
    "493vcdFwyo94yv1Lsg02xVrVRD/ZHY2cAhUJyMZkYAi+l8wJb5zR0YC9A7SneuObCNjqxGbI99sO34K3D7yxgYZRW8/eAfJr"
    "WFh5w+A4ANnB8kpADez8eEzlvT777RHsBdGOu0z5DM8WEC+6ejR4T6u4Hb2qCXq7fZkb6F63TbpZ9jLWyMKWIp/byu2ZtU01"
    "7ArRPjBs76VlPD5IZhjz9v+b9R1MpT5/HSepcrHrTX/r/Pzu5akzpBobmzO7f1kOv6hjI3lEGQCng4oYHoozQJEfy3qiHOf9"
    "V5nUEwEtBXibeFTnFt4+3ibampfrbgiFXCn/UBiMCF4HjRgdrV8sfem1Ep+4JC+j+XXHZ0Im795YbJimVuPJ8Oht6UVvDAYn"
    "Z311VFFoofKs7n6YRbUfcfaH7Jq8nfEVouGTbE0//6C+Cw9evr42/0ULOWJFkn/NHbdQwy7mBnwHF23Hw8HrXjZU9OYYWJIs"
    "z7vDu8/bRBsRbur0TLwpc1iu7FbD5STO733YEoQT2iTOt4s6yKptwBMMcOIW1N0GT1b5DVwZHIJgI+RgaLmS4cEbgDoFxDXq"
    "KYxb3qM0aEPgzURECt0lIWZgZi75jj0XYzidxISyMMTPOgUP66sP3rUKLn+C9jkm2B5BvaL6Z4IZ+AVseZWk0JjroNH74EaY"
    "+0g0s4oGsODpNgPaZXABdT5n5TUF5LFuXEUYtjoHNnC0bE5h+76+lMuBmp2EBcVyHTZj4OfzdiqcZ/04sl5QKUE728UjIZZO"
    "fFJW82rfQukLn6CVviX99xGW3CsEWbWCTMfMmjHv6zYwTGNIA28cOiz4gMpemUUyCPc68QYHAiQGQat8nrFAM1oYWoZGSzJa"
    "RYMaCgcfgpNko8mHgayGf53dFOQTPpgFDDcahxXsFmkDC1hdq5gJ5iXz0yzwQr3XR7W4mbDfa8nwBSdWAnaBdn7JKMhqBKCg"
    "RUWh81MyFXO3Y4a7zIkkJxKuOYpfayx6KAtV/bULo+qnDK1tmZ8p6onXosZrqaHGcKCdpSdNl8ykydQmtKjQYXlkWtQSkLUA"
    "IZt0uxJMDrn9O520yxhncmlDntVJCkzgNAX0E5wIT0Qmmr19nhfYkfX3Yct1jIwxGw+sQXj6i85GKMPphS3xhIEVq/8ACWUw"
    "+eXybiJqaC8Rw3eckjtXGYb8NehB+bSuVfI5oD3HsAFXN4zzmaCrVxj7Xckt1AIv58kkRuZ0fxlb11wVP8BlOxfXWopeEm8m"
    "QdmjgFaIFAIkGgwm6i9jistoDaWFxpe37qFT7bmkAHvaltPPA7niuDVFXgCVxAq07wdDOKUued4y7FQTRWGAgOyvMQPEUcfM"
    "AgWxJpB4u5zmSo73CBAmV6Y0XMYtXMdbfrcgc95ew1Cvl7VjzGBlgpN1mvo7GkQOg9/JNw7ghQRkE5uRs0DthRA1YsIA88x3"
    "BE2XFObpO2Bo1oqar30u9REz93VLNluVTEcXGsfOuntOlG6X8iqDZDZ6wuDTrYy5nClb1fBlT8aSvwj5m3k4teUb4ZVjwPNF"
    "x6jjHxLwBt5eolAgJEqbGVAaTesWjb6A8BX2IivZLl2WaQULgwUQP1BvrD5slcZzYS9IfUR0ETWc8uIRk0Z/DZhHiRJableH"
    "y9AjQaZ+AnGSBxinOsVkq+4KZO+O0YZcOd4+5rngpOPMiIVxzSVE3zDCjZWwzEvZn2PpzfxYulp44Jk33RsNuD3cUG6HM74x"
    "bPdDLUVwPJHEUX0QjvOMvl6IEsZ+QSlxS2YGD//oSxsxHlS9Wgf+p9l00xAmD7Nnz8pihsO1ho3YSPiClNZez0irC/6y6l1J"
    "oRBr98s3mQC35sLsOknfR0Prs4otAGKyiGyQsAiZhDxDo54Rbr2/mQyYZ51l/Ni6L35v1QBbd0x57653Gp9cYNM9d2uvnzUc"
    "PkioT2D/hGpFKmzl/KisPdfPnlqYsoIAktUC79vnYk6Ih++yqlCdJVpzgki92EQ44t2Igfw70UihlF2qDwoLJp6xuuPB0V4S"
    "JjEQoyyFdF5mF8MjIfX4lq63UdmT4eko+vWRu5oCXI0mxUChqJmM2DsVDic+sN+dLc4/M0/ptivtySSzlKgaVw8lBomBwS3s"
    "z1/H3rlKQQEe0xqcr5c2QSWa2ZrvPm9M7USviXZ9iXcCy5NiY+rgQgXMpqqwPQNOezU7dQLW9bPgGVikMkMagbW7x5i54k9r"
    "6gblgiaBBw1S/caaQgs/BnqJoYtwIjpq4ySIqdbiBK5ZAO6U7zHFxrEherOfLafoCM/XpLT2frSQeF8oov+ks9aGYEdr8u4c"
    "VpENgzMtvxgkNhZCa+0Y+oQTjGGdHefYwwki659y39kUj6QTaPjqxTil44on1h9v5nzSoM9cJ4V1I1TxKrdMyImCXjgil1V0"
    "XT1NpbZwBjxLvNiSkREIhsa5F1lo7dY11gAFFthmZkZFFmFSFxvE6ejSvQUd5y4vOpOXhTNEsFHIltzwUrhMXU7FiEpGl2gZ"
    "zSCOylqTtdjYy8VTXEGL32VmEgamZKE6B5XV2aqC5MeTJeC+QFGySQWmhylB5oTxNrXJohhBsFpV1JuI/1HeHrTJwiELLFZ9"
    "KGvkFLoTAtUKGAKwoug4NeSAMQxLdCLWrkXptRalZVXri3woHNhQaWbCjF/yxeJVTINne7o1oReWz1hW73qT9LEgolVPnMVy"
    "dLdZ5urqpnom2TP3Pq6We8BFSfGhhHprhnNjPFp+PyT64GrUuu1T2OxdmCnMGKIsCcu/ulRMExH51jR1cZWdu0OoTl0iq17Z"
    "iUjSuWhs9IMUWWuZaQtFA1uAFtPvIv8TacoWBhf12tK4d6yidVYyBNKzD93HRMQcsLMUm65pCFdYRGTEi0kiGUpZ+8p0kub+"
    "zFpM8QOGKi9aqAnGQpMNYxqz8+kfpE47dmB9zHeqooNeF0hB+ZhOYcwMGChibdnZ4jwX0uNnkQVbRgJszQA1h4ZS6IapUq17"
    "azLOUjtcoZy2veSgzeshCtc3LJl7g9yPKANL5ORyWWtjAjknJ4ci2lp7CCGgXKqmbJsXp5xBnBh8dQepntKb0XGI9pNhltMc"
    "rsISx7xCysft1Gi9MxVgrQu5QDbVIBWooEF3Uo0qVTsw3TFY93AJVvwkpH+otYVK6n4rxHLsYMhMssIupoiQeXgX2+Nq6pa4"
    "MQrtqT/ho14I6SVx1GKIwopW7X5yd000zE3P3uiVWHpbsH4KCfUTJP1YhbIjL7SjzTbErjfeIPek1xbKnRWD1GcvkvaH4FNo"
    "cg6zRDL3aUFfnAhlaYLU+Nwf9Io7wk/vlIjil/bsdf9RXf7lFIkSXJm/pb/hshCpeWPZzT7vADmDNlG6nS0Sg4zWigh2ovZQ"
    "C0U4Pm8Cadvo0LywiiGFYMkUWSkWVMPM6kP4ep6I8QlnLj1TaW/PcTZBOsnWElpUQBgncCN0PfmUDVoqkzMEGWkfQ/dCktHl"
    "dJWdXJvdpXURfp1Y/B9QzbixbstMLMeNMXnvVfKqEaMPw7JHWMfwEoeQIxiM/X4e6yDd9bqhJvpY0awl6KnWtlo+lPWarXx2"
    "mWp2czW6qpLeSRYhflm5rToJX3NrovG4lgT9MpHTI5IuMHX+3LnQsxsz6BGa/W4T27wpaa1sMXLGyZzTt/KzS+DeKPPhdULf"
    "hKadYbG7CQfAyladArgQhhxkYAPumO0l5M8zxSvnUzIS0nK7R8w+oMMPCSxL6DPYZizcmpJSOXM/WLdpaBnD+GEStLhERemX"
    "TSQZ5NTQNqWJcQB/bm7F3tpTMtEE0tCpNoPkUeknef0cunUf/Fh6Aw/PHZl6KENahEQ9eTZMFjzzQex9Or2kxofkGjpe8RY5"
    "co0J4dzvPDGFt9imDOb94pDPPH0KFE2PWGRbqNrxP6mIKxtg4ouk1NalRqyeYtUH+nYwavXQTSDBX1dIIzFdb57v9t7ZGNiU"
    "GVT5sly8qpdHRm7NRsTaLWWtiJ+aDEw+3NR0K9E32nyC/xcxf6lJHy3QzQJazAxIXqCQ3hYfTIYkd2BthP8BPY0bwg=="
)


def test_sweep_is_large_and_varied():
    got = choices()
    assert len(got) == 3 * 6000
    for c in "diwx":
        assert got.count(c) >= 200, (c, got.count(c))


def test_auto_choice_is_unchanged():
    got, want = choices(), unpack(RECORDED)
    assert len(got) == len(want)
    diff = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
    if diff:
        layers = sweep()
        shown = [f"{layers[i // 3]} {DIRECTIONS[i % 3]}: recorded {want[i]}, now {got[i]}" for i in diff[:10]]
        pytest.fail(f"{len(diff)} choices changed:\n" + "\n".join(shown))


def test_plan_agrees_with_the_choice():
    """auto's plan runs the chosen algorithm unless its entries cannot (then: an explicit fallback)."""
    for i, (x, wt, st, pads, dil, g, mode) in enumerate(sweep()[:1500]):
        for d, direction in enumerate(DIRECTIONS):
            try:
                want = pyconv._core.conv2d_choose_algo(x, wt, st, pads, dil, g, mode, d)
            except ValueError:
                continue
            plan = pyconv._core.conv2d_plan(x, wt, st, pads, dil, g, MODES[mode], direction)
            assert plan["algo"] == want or plan["fallback"], (x, wt, st, pads, dil, g, direction, plan)


# Layers whose calls are logged in a subprocess and compared with conv2d_plan: (input, weight,
# stride, pads, dilation, groups, mode) x direction x algo x workspace limit.
LOGGED = [((1, 64, 56, 56), (64, 64, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "zeros"),
          ((2, 8, 20, 20), (16, 8, 5, 5), (2, 2), (2, 2, 2, 2), (1, 1), 1, "zeros"),
          ((1, 16, 24, 24), (16, 16, 3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 1, "zeros"),
          ((2, 16, 12, 12), (16, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 16, "zeros"),
          ((2, 16, 9, 9), (24, 16, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "zeros"),
          ((2, 6, 11, 13), (8, 6, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "reflect")]
LIMITS = (None, 1024, 1 << 16)
SCRIPT = """
import json, sys
import numpy as np
import pyconv
from pyconv import _core
default = _core.get_workspace_limit()
for x, w, st, pads, dil, g, mode, direction, algo, limit in json.loads(sys.argv[1]):
    _core.set_workspace_limit(limit or default)
    plan = _core.conv2d_plan(x, w, st, pads, dil, g, mode, direction, algo)
    code = (_core.padding_modes().index(mode), _core.algorithms().index(algo))
    sys.stderr.write("@@ " + json.dumps(plan) + "\\n"); sys.stderr.flush()
    xs, ws = np.ones(x, "f4"), np.ones(w, "f4")
    oh = (x[2] + pads[0] + pads[1] - dil[0] * (w[2] - 1) - 1) // st[0] + 1
    ow = (x[3] + pads[2] + pads[3] - dil[1] * (w[3] - 1) - 1) // st[1] + 1
    dy = np.ones((x[0], w[0], oh, ow), "f4")
    if direction == "fwd":
        _core.conv2d_fwd(xs, ws, None, st, pads, dil, g, *code)
    elif direction == "bwd_data":
        _core.conv2d_bwd_data(dy, ws, x, st, pads, dil, g, *code)
    else:
        _core.conv2d_bwd_weight(xs, dy, w, st, pads, dil, g, *code)
    sys.stderr.flush()
"""


def _logged_runs(calls, level="1"):
    env = dict(os.environ, PYCONV_VERBOSE=level)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(calls)], capture_output=True, text=True, env=env,
                          cwd=tempfile.gettempdir(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    runs, plan = [], None
    for line in proc.stderr.splitlines():
        if line.startswith("@@ "):
            plan = json.loads(line[3:])
            runs.append((plan, []))
        elif line.startswith("pyconv: conv2d"):
            runs[-1][1].append(line[len("pyconv: "):])
    return runs


def test_the_log_names_the_entry_that_ran():
    calls = [list(layer) + [d, a, lim] for layer in LOGGED for d in DIRECTIONS for a in ("auto", "direct", "im2col",
                                                                                         "winograd")
             for lim in LIMITS]
    seen = set()
    for plan, lines in _logged_runs(calls):
        ran = [ln for ln in lines if ln.startswith("conv2d -> ")]
        assert len(ran) <= 1, lines
        if not ran:  # logged once per distinct line: an earlier call printed it
            assert any(s.startswith("conv2d -> " + plan["entry"]) for s in seen), (plan, seen)
            continue
        seen.add(ran[0])
        assert ran[0].startswith("conv2d -> " + plan["entry"]), (plan, ran)
        assert ("not applicable" in ran[0] or "declined" in ran[0]) == plan["fallback"], (plan, ran)


def test_workspace_fallback_is_not_logged_as_winograd():
    """Issue 13: with a 1 KiB workspace a forced Winograd 64@56 layer runs im2col, and says so."""
    layer = list(LOGGED[0])
    (plan, lines), = _logged_runs([layer + ["fwd", "winograd", 1024]])
    assert plan["algo"] == "im2col" and plan["fallback"]
    assert len(lines) == 1 and "winograd_f4x4" not in lines[0], lines
    assert lines[0].startswith("conv2d -> conv2d_fwd_im2col_") and "(winograd declined: " in lines[0], lines


def test_verbose_2_lists_the_skipped_entries():
    layer = list(LOGGED[0])
    (plan, lines), = _logged_runs([layer + ["fwd", "winograd", 1024]], level="2")
    skipped = [ln for ln in lines if ln.startswith("conv2d: skipped ")]
    assert len(skipped) == len(plan["skipped"]) >= 2, lines
    for (entry, why), ln in zip(plan["skipped"], skipped):
        assert ln == f"conv2d: skipped {entry}: {why}"
    assert "workspace" in plan["skipped"][0][1]


if __name__ == "__main__":
    blob = pack(choices())
    print("RECORDED = (\n" + "".join(f'    "{blob[i:i + 96]}"\n' for i in range(0, len(blob), 96)) + ")", file=sys.stdout)
