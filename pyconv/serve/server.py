"""The page's HTTP server: the standard library's ``ThreadingHTTPServer``, server-sent events.

Routes (everything else is 404):

==========================  ======================================================================
``GET /``                   the page (``static/index.html`` with this run's token)
``GET /static/NAME``        ``app.js``, ``style.css``: a fixed list read from the package, nothing else
``GET /state``              the run as JSON (documented in the README)
``GET /events``             ``text/event-stream``: ``info`` once, then ``stats`` and ``snapshot``
``POST /api/pause``         ``{}``; ``/api/resume`` ``{}``; ``/api/save`` ``{}`` (a checkpoint now)
``POST /api/set``           ``{"lr": 0.01, "momentum": 0.9, "weight_decay": 0}`` (any of them)
``POST /api/select``        ``{"image": 3}``: which sample image the layer view shows
``POST /api/predict``       an image file as the body (``?invert=0|1``): its top classes
==========================  ======================================================================

Every request must name this server in ``Host`` (127.0.0.1, localhost or [::1] with the port,
when bound to loopback: a DNS-rebinding page cannot read it). A POST must also come from the
page's own origin (``Origin`` equal to ``http://`` + Host, ``Sec-Fetch-Site`` same-origin when
sent) and carry the run's token in ``X-Pyconv-Token``; bodies are size-limited and checked by
:mod:`.controls` before anything changes.
"""
import errno
import hmac
import ipaddress
import json
import secrets
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from .controls import MAX_JSON_BYTES, MAX_UPLOAD_BYTES, ControlError, parse_json

__all__ = ["PageServer", "ServeError", "open_server", "is_loopback"]

STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SSE_MIN_INTERVAL = 1.0  # one update a second (sooner after a control): the browser shares the machine
SSE_KEEPALIVE = 15.0
SEND_TIMEOUT = 10.0  # a page that does not read for this long is dropped


class ServeError(ValueError):
    """The server cannot start (port in use, bad host): one line for the command line."""


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _read_static(name):
    return resources.files("pyconv.serve").joinpath("static", name).read_bytes()


class PageServer(ThreadingHTTPServer):
    """Bound at construction (so a port in use is reported before training starts); serves
    once :meth:`attach` gives it a :class:`~pyconv.serve.session.LiveSession`."""

    daemon_threads = True
    allow_reuse_address = True  # TIME_WAIT only: Linux still refuses a port another server listens on

    def __init__(self, host, port):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.host = host
        super().__init__((host, port), Handler)
        self.port = self.socket.getsockname()[1]
        self.token = secrets.token_urlsafe(24)
        self.session = None
        self.thread = None
        self.static = {name: _read_static(name) for name in STATIC}
        self.page_template = _read_static("index.html").decode("utf-8")
        name = f"[{host}]" if ":" in host else host
        self.url = f"http://{name}:{self.port}/"
        if is_loopback(host):
            self.allowed_hosts = {f"127.0.0.1:{self.port}", f"localhost:{self.port}", f"[::1]:{self.port}",
                                  f"{name}:{self.port}"}
        elif host in ("0.0.0.0", "::"):
            self.allowed_hosts = None  # every name of this machine: only the token and origin checks apply
        else:
            self.allowed_hosts = {f"{name}:{self.port}", f"127.0.0.1:{self.port}", f"localhost:{self.port}"}

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's: no reverse DNS lookup of the host
        self.server_name, self.server_port = self.host, self.socket.getsockname()[1]

    def attach(self, session):
        self.session = session
        self.page = (self.page_template.replace("__PYCONV_TOKEN__", self.token)
                     .replace("__PYCONV_RUN__", session.run_id).encode("utf-8"))
        self.thread = threading.Thread(target=self.serve_forever, kwargs=dict(poll_interval=0.2),
                                       name="pyconv-serve", daemon=True)
        self.thread.start()
        return session

    def close(self):
        if self.session is not None:
            self.session.close()  # every open event stream says goodbye to its page, then ends
            self.session.hub.wait_streams_closed(2.0)
        if self.thread is not None:
            self.shutdown()
            self.thread.join(5)
        self.server_close()

    def handle_error(self, request, client_address):
        pass  # a page that went away mid-request is no news; errors are answered per request


def open_server(host="127.0.0.1", port=8000):
    """A bound :class:`PageServer`, or :class:`ServeError` saying in one line why not."""
    try:
        return PageServer(host, port)
    except socket.gaierror:
        raise ServeError(f"--host {host}: not an address this machine can listen on") from None
    except OverflowError:
        raise ServeError(f"--port {port}: not a port number (0 to 65535)") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(f"--port {port} is in use on {host} (another pyconv train --serve?): choose another "
                             "with --port N, or --port 0 for any free one") from None
        if exc.errno == errno.EACCES:
            raise ServeError(f"--port {port}: permission denied (ports below 1024 need root): choose --port 1024 "
                             "or above") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ServeError(f"--host {host}: not an address of this machine") from None
        raise ServeError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pyconv"
    sys_version = ""
    timeout = 120  # an idle keep-alive connection is closed after this long (an event stream keeps writing)

    def log_message(self, format, *args):
        pass  # the terminal shows the training, not every request

    # ------------------------------------------------------------------ replies
    def _send(self, status, body, ctype, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status, value):
        body = json.dumps(value, separators=(",", ":"), allow_nan=False).encode("utf-8")
        self._send(status, body, "application/json")

    def _refuse(self, status, message):
        self._json(status, dict(ok=False, error=message))

    # ------------------------------------------------------------------ checks
    def _host_ok(self):
        allowed = self.server.allowed_hosts
        if allowed is None or (self.headers.get("Host") or "").lower() in allowed:
            return True
        self._refuse(421 if self.headers.get("Host") else 400,
                     f"this server answers to {sorted(allowed)[0]} (Host {self.headers.get('Host')!r} refused)")
        return False

    def _post_ok(self):
        origin = self.headers.get("Origin")
        own = f"http://{self.headers.get('Host', '')}"
        if origin is None or origin.lower() != own.lower():
            self._refuse(403, f"refused: the controls accept requests from the page itself ({own}), not from "
                              f"{origin or 'a request without an Origin header'}")
            return False
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            self._refuse(403, f"refused: a {site} request (the controls accept the page's own requests only)")
            return False
        token = self.headers.get("X-Pyconv-Token", "")
        if not hmac.compare_digest(token.encode("utf-8", "replace"), self.server.token.encode("utf-8")):
            self._refuse(403, "refused: missing or wrong X-Pyconv-Token (reload the page: every run has its own)")
            return False
        return True

    def _body(self, limit):
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            raise ControlError("chunked bodies are not accepted: send Content-Length", 411)
        if length is None:
            raise ControlError("a POST needs a Content-Length", 411)
        try:
            n = int(length)
        except ValueError:
            raise ControlError(f"bad Content-Length {length!r}") from None
        if n < 0:
            raise ControlError(f"bad Content-Length {length!r}")
        if n > limit:
            self.close_connection = True  # the body is not read
            raise ControlError(f"the request body is {n:,} bytes; at most {limit:,}", 413)
        self.connection.settimeout(SEND_TIMEOUT)
        data = self.rfile.read(n)
        if len(data) != n:
            raise ControlError("the request body ended early")
        return data

    # ------------------------------------------------------------------ GET
    def do_GET(self):
        if not self._host_ok():
            return
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(200, self.server.page, "text/html; charset=utf-8",
                       [("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY")])
        elif path.startswith("/static/") and path[len("/static/"):] in STATIC:
            name = path[len("/static/"):]
            self._send(200, self.server.static[name], STATIC[name])
        elif path == "/state":
            self._json(200, self.server.session.hub.stats)
        elif path == "/events":
            self._events()
        else:
            self._refuse(404, f"no such page: {path[:200]}")

    def _events(self):
        hub = self.server.session.hub
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.connection.settimeout(SEND_TIMEOUT)
        hub.enter()
        seen_stats = seen_snap = -1
        cursor, gen, hist_len = 0, -1, -1
        try:
            self._event(None, None, "retry: 3000\n\n")
            self._event("info", json.dumps(hub.info, separators=(",", ":"), allow_nan=False))
            while not hub.closed:
                with hub.cond:
                    stats_seq, snap_seq = hub.stats_seq, hub.snapshot_seq
                    stats = {k: v for k, v in hub.stats.items() if k != "history"}  # sent apart, when it grows
                    reset = gen != hub.points_gen
                    if reset:
                        cursor, gen = 0, hub.points_gen
                    points = hub.points[cursor:]
                    cursor = len(hub.points)
                    history = hub.history if len(hub.history) != hist_len else None
                    hist_len = len(hub.history)
                if stats_seq != seen_stats:
                    self._event("stats", json.dumps(dict(stats=stats, points=points, reset=reset, history=history),
                                                    separators=(",", ":"), allow_nan=False))
                    seen_stats = stats_seq
                if snap_seq != seen_snap:
                    text, seen_snap = hub.snapshot_json()
                    if text is not None:
                        self._event("snapshot", text)
                hub.sleep(SSE_MIN_INTERVAL)  # at most so many updates a second; woken by close or a control
                if hub.wait((seen_stats, seen_snap), SSE_KEEPALIVE) == (seen_stats, seen_snap) and not hub.closed:
                    self._event(None, None, ": keepalive\n\n")
            self._event("bye", json.dumps(dict(status=hub.stats.get("status"))))
        except (OSError, ValueError):  # the page went away (closed, reloaded, too slow): training goes on
            return
        finally:
            hub.leave()

    def _event(self, name, data, raw=None):
        text = raw if raw is not None else (f"event: {name}\n" if name else "") + f"data: {data}\n\n"
        self.wfile.write(text.encode("utf-8"))
        self.wfile.flush()

    # ------------------------------------------------------------------ POST
    def do_POST(self):
        if not self._host_ok():
            return
        url = urlsplit(self.path)
        session = self.server.session
        routes = {"/api/pause": (), "/api/resume": (), "/api/save": (), "/api/set": ("lr", "momentum", "weight_decay"),
                  "/api/select": ("image",), "/api/predict": None}
        if url.path not in routes:
            self._refuse(404, f"no such control: {url.path[:200]}")
            return
        if not self._post_ok():
            return
        try:
            if url.path == "/api/predict":
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                if not (ctype.startswith("image/") or ctype == "application/octet-stream"):
                    raise ControlError(f"an upload must be sent as image/* or application/octet-stream, not "
                                       f"{ctype or 'no Content-Type'}", 415)
                invert = parse_qs(url.query).get("invert", [None])[0]
                if invert not in (None, "0", "1"):
                    raise ControlError(f"invert must be 0 or 1, got {invert!r}")
                data = self._body(MAX_UPLOAD_BYTES)
                result = session.classify(data, None if invert is None else invert == "1")
            else:
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                if ctype != "application/json":
                    raise ControlError(f"the controls take application/json, not {ctype or 'no Content-Type'}", 415)
                fields = parse_json(self._body(MAX_JSON_BYTES), routes[url.path])
                if url.path == "/api/pause":
                    result = session.pause()
                elif url.path == "/api/resume":
                    result = session.resume()
                elif url.path == "/api/save":
                    result = session.save_checkpoint()
                elif url.path == "/api/set":
                    result = session.set_hyperparameters(fields)
                else:
                    if "image" not in fields:
                        raise ControlError("give the sample image's index: {\"image\": 0}")
                    result = session.select(fields["image"])
        except ControlError as exc:
            self._refuse(exc.status, str(exc))
            return
        except (OSError, ValueError) as exc:  # e.g. the checkpoint could not be written
            self._refuse(500, str(exc))
            return
        self._json(200, dict(ok=True, **result))
