"""``pyconv train --serve``: the lecture's ConvNetJS demo page, live, for a pyconv training run.

:func:`open_server` binds the address (so a port in use is one line before training starts),
:func:`attach` starts serving a :class:`LiveSession` (the :class:`~pyconv.train.Callback` that
the Trainer calls between steps). The page (``static/``) is plain HTML, JavaScript and CSS
shipped inside the package: no build step, no CDN, no request leaves the machine. Standard
library only: ``http.server.ThreadingHTTPServer`` and server-sent events.

Layering: this package imports train, nn and the snapshot helpers; nothing below it imports it.
"""
from .controls import ControlError
from .server import PageServer, ServeError, is_loopback, open_server
from .session import Hub, LiveSession

__all__ = ["ControlError", "Hub", "LiveSession", "PageServer", "ServeError", "attach", "is_loopback", "open_server"]


def attach(server, trainer, meta, opts, save=None, should_stop=None, header=""):
    """Starts ``server`` (from :func:`open_server`) on a new :class:`LiveSession` of ``trainer``
    and returns the session, to pass to ``trainer.run(callbacks=[session])``."""
    session = LiveSession(trainer, meta, opts, save=save, should_stop=should_stop, header=header)
    server.attach(session)
    return session
