"""``devicefit report --serve``: the report on http://127.0.0.1:PORT/, rebuilt as the study grows.

Only loopback is bound: a report names devices, storage folders and models, which is not
for the whole network. The page of a running study reloads itself; each request for it
rebuilds it from the storage when the copy on disk is older than a few seconds, so a study
driven from another machine (a cluster) is shown live too.
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, unquote, urlsplit

from devicefit.errors import UsageError

REBUILD_AFTER_S = 5.0  # a burst of reloads rebuilds once


class _Handler(http.server.SimpleHTTPRequestHandler):
    page = "report.html"
    rebuild: Callable[[], None] | None = None
    state: dict[str, Any] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost", "[::1]"):
            # A page on another site could point its own name at 127.0.0.1 (DNS rebinding)
            # and read the report; the Host header gives it away.
            self.send_error(403, "only for pages of this machine")
            return
        path = unquote(urlsplit(self.path).path)
        if path in ("/", ""):
            self.send_response(302)
            self.send_header("Location", "/" + quote(self.page))
            self.end_headers()
            return
        if path != "/" + self.page:
            # The page is self-contained: nothing else in the folder (the study database,
            # models) is served, and no folder is listed.
            self.send_error(404, "only the report is served here")
            return
        if self.rebuild is not None:
            self._maybe_rebuild()
        super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.send_error(405)

    def _maybe_rebuild(self) -> None:
        assert self.rebuild is not None  # do_GET calls this only when there is one
        with self.state["lock"]:
            if time.monotonic() - self.state["built"] < REBUILD_AFTER_S:
                return
            try:
                self.rebuild()
            except Exception as exc:  # noqa: BLE001 - serve the last good page instead
                self.log_error("report not rebuilt: %s", exc)
            self.state["built"] = time.monotonic()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of base
        """Log nothing: one line per request would drown the URL the user needs.

        Args:
            format: printf-style format from ``http.server`` (ignored).
            *args: its values (ignored).
        """
        pass  # one line per request would drown the URL the user needs


def make_server(
    folder: Path, page: str, port: int, rebuild: Callable[[], None] | None
) -> http.server.ThreadingHTTPServer:
    """A server for the report page in ``folder``, on 127.0.0.1 only.

    Args:
        folder: the results folder holding the page.
        page: the page's file name; the only thing served.
        port: the port to listen on (0 picks a free one).
        rebuild: rewrites the page, called on a request when the copy is older than
            ``REBUILD_AFTER_S``; None for a finished study.

    Returns:
        The bound server, not yet serving.

    Raises:
        UsageError: the port cannot be listened on (in use, not allowed).
    """
    state = {"lock": threading.Lock(), "built": time.monotonic()}
    handler = type(
        "ReportHandler",
        (_Handler,),
        {"page": page, "rebuild": staticmethod(rebuild) if rebuild else None, "state": state},
    )
    try:
        return http.server.ThreadingHTTPServer(
            ("127.0.0.1", port), functools.partial(handler, directory=str(folder))
        )
    except OSError as exc:
        raise UsageError(f"--port {port}: cannot listen on 127.0.0.1 ({exc.strerror})") from None


def serve_forever(server: http.server.ThreadingHTTPServer, on_ready: Callable[[str], None]) -> int:
    """Serve until interrupted, then close the server.

    Args:
        server: from ``make_server``.
        on_ready: called once with the page's base URL, before serving starts.

    Returns:
        The exit code: 0.
    """
    # An AF_INET socket's name: typeshed's address type also allows bytes.
    host, port = cast(tuple[str, int], server.server_address[:2])
    on_ready(f"http://{host}:{port}/")
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
