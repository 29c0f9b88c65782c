"""``devicefit agent``: the HTTP server that measures TFLite files on the device it runs on.

JSON API (README, "Device agents"):
  GET  /health     {"status": "ok", "queue": n}
  GET  /info       host, CPU, cores, memory, OS, runtime, sensors, limits
  POST /benchmark  body: the TFLite file; query: threads, min_runs, min_seconds,
                   warmup, warmup_seconds, cooldown_c, cooldown_timeout_s, target_ci,
                   max_seconds
                   -> 200 measurement, 400 bad request, 401 no/wrong token,
                      413 too large, 422 the model failed, 503 queue full
  POST /rounds     body: several TFLite files back to back; query: sizes (their byte
                   counts, comma-separated), threads, rounds, block_seconds,
                   block_min_runs, block_warmup
                   -> 200 {"block_ms": per file, one median per round, ...}: paired
                      rounds, interleaved on the device in one process
Every endpoint needs ``Authorization: Bearer TOKEN`` when the agent has a token.
Stdlib, numpy and a LiteRT runtime only: this runs on a Raspberry Pi.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import platform
import ssl
import sys
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from devicefit.deploy.agent_jobs import JobFailed, MeasurementQueue
from devicefit.deploy.device_info import device_info
from devicefit.deploy.sensors import Sensors

# name -> (type, lowest, highest): the only spec fields a client may set.
SPEC_FIELDS: dict[str, tuple[type, float, float]] = {
    "threads": (int, 1, 256),
    "min_runs": (int, 1, 1_000_000),
    "min_seconds": (float, 0, 3600),
    "warmup": (int, 0, 1_000_000),
    "warmup_seconds": (float, 0, 600),
    "cooldown_c": (float, 0, 150),
    "cooldown_timeout_s": (float, 0, 3600),
    "target_ci": (float, 0, 1),
    "max_seconds": (float, 0, 3600),
    "op_profile_runs": (int, 0, 100_000),  # then a per-op profile (deploy/op_profiler.py)
    "placements": (int, 1, 64),  # loads the timed runs are shared among (deploy/bench.py)
}
ROUNDS_FIELDS: dict[str, tuple[type, float, float]] = {
    "threads": (int, 1, 256),
    "rounds": (int, 1, 10_000),
    "block_seconds": (float, 0, 60),
    "block_min_runs": (int, 1, 1_000_000),
    "block_warmup": (int, 0, 1_000_000),
}
MAX_ROUND_FILES = 64
TFLITE_MAGIC = b"TFL3"  # flatbuffer file identifier, bytes 4..8


class AgentConfigError(ValueError):
    """The agent cannot start as configured (exit code 2)."""


@dataclass(frozen=True)
class AgentConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    max_upload_mb: float = 256.0
    timeout_s: float = 300.0  # per measurement, in the child process
    memory_mb: int | None = 4096  # address-space limit of the child process
    max_queued: int = 16
    certfile: str | None = None
    keyfile: str | None = None

    def limits(self) -> dict[str, Any]:
        """The limits a client may need to know, as reported in ``GET /info``.

        Returns:
            ``max_upload_mb``, ``timeout_s``, ``memory_mb`` and ``max_queued`` (never the token).
        """
        return {
            "max_upload_mb": self.max_upload_mb,
            "timeout_s": self.timeout_s,
            "memory_mb": self.memory_mb,
            "max_queued": self.max_queued,
        }


def is_loopback(host: str) -> bool:
    """Whether ``host`` can only be reached from this machine.

    Args:
        host: the address the agent binds, as given to ``--host``.

    Returns:
        True for ``localhost`` and loopback IP addresses; False for any other name, which
        may resolve to anything.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_config(config: AgentConfig) -> None:
    """Refuse a configuration that would be unsafe or cannot work.

    Args:
        config: the agent's settings, checked before it binds its port.

    Raises:
        AgentConfigError: it listens beyond loopback without a token, the token is shorter
            than 16 characters, only one of certfile and keyfile is set, or the upload or
            time limit is not positive.
    """
    if not is_loopback(config.host) and not config.token:
        raise AgentConfigError(
            f"--host {config.host}: listening beyond loopback needs a token "
            "(set DEVICEFIT_TOKEN or --token-file)"
        )
    if config.token is not None and len(config.token) < 16:
        raise AgentConfigError("token: use at least 16 characters (e.g. `openssl rand -hex 24`)")
    if bool(config.certfile) != bool(config.keyfile):
        raise AgentConfigError("--certfile and --keyfile go together")
    if config.max_upload_mb <= 0 or config.timeout_s <= 0:
        raise AgentConfigError("--max-upload-mb and --timeout must be positive")


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_spec(
    query: str, fields: dict[str, tuple[type, float, float]] | None = None
) -> dict[str, Any]:
    """Turn a request's query string into checked benchmark settings.

    Args:
        query: the URL's query part, e.g. ``threads=4&min_runs=50``.
        fields: name -> (type, lowest, highest) of the settings allowed; default
            ``SPEC_FIELDS`` (``POST /benchmark``).

    Returns:
        Setting name -> value converted to its type; only the settings given.

    Raises:
        BadRequest: (400) a setting is unknown, not of its type, or out of its range.
    """
    fields = SPEC_FIELDS if fields is None else fields
    spec: dict[str, Any] = {}
    for key, text in parse_qsl(query, keep_blank_values=True):
        if key not in fields:
            raise BadRequest(400, f"unknown benchmark setting {key!r}; known: {', '.join(fields)}")
        kind, low, high = fields[key]
        try:
            value = kind(text)
        except ValueError:
            raise BadRequest(400, f"{key}: expected a {kind.__name__}, got {text!r}") from None
        if not low <= value <= high:
            raise BadRequest(400, f"{key}: {value} is outside [{low}, {high}]")
        spec[key] = value
    return spec


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, config: AgentConfig) -> None:
        check_config(config)
        self.config = config
        self.sensors = Sensors()
        self.jobs = MeasurementQueue(config.timeout_s, config.memory_mb, config.max_queued)
        super().__init__((config.host, config.port), _Handler)
        self._tls: ssl.SSLContext | None = None
        if config.certfile:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(config.certfile, config.keyfile)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Do the TLS handshake (when serving HTTPS), then handle the connection.

        A client whose handshake fails or times out (30 s) is dropped quietly.

        Args:
            request: the accepted socket.
            client_address: the client's address, passed on to the handler.
        """
        # The TLS handshake happens here, in the connection's own thread and under a
        # timeout: done in accept(), one silent client would block every other.
        if self._tls is not None:
            request.settimeout(30)
            try:
                request = self._tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                request.close()
                return
        super().finish_request(request, client_address)

    @property
    def url(self) -> str:
        """The base URL the agent serves on (http or https, with the bound port)."""
        # An AF_INET(6) socket's name: typeshed's address type also allows bytes.
        host, port = cast(tuple[str, int], self.server_address[:2])
        return f"{'https' if self.config.certfile else 'http'}://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: AgentServer
    server_version = "devicefit-agent"
    protocol_version = "HTTP/1.1"
    timeout = 60  # a client that stops sending mid-upload loses its connection

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch({"/health": self._health, "/info": self._info})

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch({"/benchmark": self._benchmark, "/rounds": self._rounds})

    def _dispatch(self, routes: dict[str, Any]) -> None:
        route = routes.get(urlsplit(self.path).path)
        try:
            self._authorize()
            if route is None:
                raise BadRequest(
                    404, f"no such endpoint: {self.command} {urlsplit(self.path).path}"
                )
            self._reply(200, route())
        except (BadRequest, JobFailed) as exc:
            # A body left unread would be parsed as the next request: close instead.
            self.close_connection = True
            self._reply(exc.status, {"error": str(exc)})

    def _authorize(self) -> None:
        token = self.server.config.token
        if token is None:
            return
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        # Constant-time comparison: response time must not reveal how much matched.
        ok = hmac.compare_digest(given.strip().encode(), token.encode())
        if scheme.lower() != "bearer" or not ok:
            self.close_connection = True  # the body (if any) is not read
            raise BadRequest(401, "missing or wrong bearer token")

    def _health(self) -> dict[str, Any]:
        return {"status": "ok", "queue": self.server.jobs.length}

    def _info(self) -> dict[str, Any]:
        return device_info(self.server.sensors, self.server.config.limits())

    def _benchmark(self) -> dict[str, Any]:
        spec = parse_spec(urlsplit(self.path).query)
        self._refuse_when_full()
        content = self._read_body()
        _check_tflite(content, "the body")
        return self._measured([content], spec, rounds=False)

    def _rounds(self) -> dict[str, Any]:
        pairs = parse_qsl(urlsplit(self.path).query, keep_blank_values=True)
        sizes_text = dict(pairs).get("sizes")
        if not sizes_text:
            raise BadRequest(400, "sizes: give the byte count of each file, comma-separated")
        try:
            sizes = [int(part) for part in sizes_text.split(",")]
        except ValueError:
            raise BadRequest(400, f"sizes: not a list of numbers: {sizes_text!r}") from None
        if not 1 <= len(sizes) <= MAX_ROUND_FILES or min(sizes) < 8:
            raise BadRequest(
                400, f"sizes: 1 to {MAX_ROUND_FILES} files of at least 8 bytes, got {sizes}"
            )
        spec = parse_spec("&".join(f"{k}={v}" for k, v in pairs if k != "sizes"), ROUNDS_FIELDS)
        self._refuse_when_full()
        body = self._read_body()
        if len(body) != sum(sizes):
            raise BadRequest(400, f"the body has {len(body)} bytes, sizes add up to {sum(sizes)}")
        contents, offset = [], 0
        for index, size in enumerate(sizes):
            contents.append(body[offset : offset + size])
            _check_tflite(contents[-1], f"file {index + 1}")
            offset += size
        return self._measured(contents, spec, rounds=True)

    def _refuse_when_full(self) -> None:
        jobs = self.server.jobs
        if jobs.length >= jobs.max_queued:
            # Refused before the upload is read: queued files are held in memory, and a
            # small device must not take in more than its queue can hold.
            raise JobFailed(f"{jobs.length} measurements already queued; retry later", 503)

    def _measured(self, contents: list[bytes], spec: dict[str, Any], rounds: bool) -> dict:
        began = time.time()
        result = self.server.jobs.measure(contents, spec, rounds)
        result["node"] = platform.node()
        result["agent_wall_s"] = time.time() - began
        return result

    def _read_body(self) -> bytes:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.close_connection = True
            raise BadRequest(411, "Content-Length is required")
        try:
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            raise BadRequest(400, f"Content-Length: not a number: {length_text!r}") from None
        limit = int(self.server.config.max_upload_mb * 2**20)
        if length > limit:
            self.close_connection = True  # never read an over-sized body
            raise BadRequest(413, f"upload of {length} bytes is over the {limit}-byte limit")
        if length < 0:
            raise BadRequest(400, "Content-Length: negative")
        content = self.rfile.read(length)
        if len(content) != length:
            self.close_connection = True
            raise BadRequest(400, f"body ended after {len(content)} of {length} bytes")
        return content

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of base
        """Log one request line to stderr, prefixed with the client's address.

        Args:
            format: printf-style format from ``http.server``.
            *args: its values.
        """
        sys.stderr.write(f"agent {self.address_string()} {format % args}\n")


def _check_tflite(content: bytes, what: str) -> None:
    if len(content) < 8 or content[4:8] != TFLITE_MAGIC:
        raise BadRequest(400, f"{what} is not a TFLite flatbuffer (no TFL3 identifier)")


def serve(config: AgentConfig) -> None:
    """Serve until interrupted.

    Prints the URL, limits and settings (never the token), then handles requests until
    Ctrl-C; the socket is closed either way.

    Args:
        config: the agent's settings.

    Raises:
        AgentConfigError: the settings are refused by ``check_config``.
        OSError: the address cannot be bound or the certificate cannot be read.
    """
    server = AgentServer(config)
    print(f"devicefit agent serving on {server.url} (limits: {json.dumps(config.limits())})")
    print(f"config: {json.dumps({k: v for k, v in asdict(config).items() if k != 'token'})}")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
