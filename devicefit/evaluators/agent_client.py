"""``http://host:port``: a device served by ``devicefit agent``, measured over HTTP."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from devicefit.errors import DeviceUnavailable, TrialFailed, UsageError
from devicefit.evaluators.base import (
    BenchmarkSpec,
    DeviceEvaluator,
    Measurement,
    Rounds,
    RoundsSpec,
)

# Answers that are the model's fault: the trial fails, the device stays in its pool.
MODEL_ERRORS = (400, 413, 422)
# Answers worth retrying on the same device after a pause.
TRANSIENT = (429, 500, 502, 503, 504)


class AgentEvaluator(DeviceEvaluator):
    """Client of one agent. Spec: ``http[s]://HOST:PORT[?token_file=PATH&cafile=PATH]``.

    The token comes from ``token_file``, else ``$DEVICEFIT_TOKEN``, else
    ``$DEVICEFIT_TOKEN_FILE``. Connection failures and busy answers are retried
    with exponential back-off; after the last retry the device is unavailable.
    """

    def __init__(
        self,
        spec: str,
        name: str | None = None,
        retries: int = 3,
        backoff_s: float = 0.5,
        connect_timeout_s: float = 10.0,
    ) -> None:
        parts = urlsplit(spec)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
            raise UsageError(f"--device {spec!r}: expected http://HOST:PORT or https://HOST:PORT")
        options = dict(parse_qsl(parts.query))
        unknown = set(options) - {"token_file", "cafile"}
        if unknown:
            raise UsageError(f"--device {spec!r}: unknown option(s) {', '.join(sorted(unknown))}")
        self.base = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        self.name = name or f"{parts.hostname}:{parts.port}"
        self.token = _token(options.get("token_file"), spec)
        self.retries = retries
        self.backoff_s = backoff_s
        self.connect_timeout_s = connect_timeout_s
        # An agent on this machine competes with trial work for the CPU.
        self.shares_host_cpu = parts.hostname in ("localhost", "::1") or parts.hostname.startswith(
            "127."
        )
        self._context = None
        self._limit: int | None = None
        if parts.scheme == "https":
            self._context = ssl.create_default_context(cafile=options.get("cafile"))

    def measure(self, tflite: bytes, spec: BenchmarkSpec) -> Measurement:
        query = {
            "threads": spec.threads,
            "min_runs": spec.min_runs,
            "min_seconds": spec.min_seconds,
            "warmup": spec.warmup,
            "warmup_seconds": spec.warmup_seconds,
        }
        if spec.cooldown_c is not None:
            query.update(cooldown_c=spec.cooldown_c, cooldown_timeout_s=spec.cooldown_timeout_s)
        # Sent only when not the agent's own default: an agent older than these settings
        # refuses any it does not know.
        for key in ("target_ci", "max_seconds", "op_profile_runs", "placements"):
            if getattr(spec, key) != getattr(BenchmarkSpec, key):
                query[key] = getattr(spec, key)
        self._check_upload(len(tflite))
        # The agent may be finishing another client's measurement first.
        timeout = 2 * spec.timeout_s + (spec.cooldown_timeout_s if spec.cooldown_c else 0) + 30
        data = self._request("POST", f"/benchmark?{urlencode(query)}", tflite, timeout)
        try:
            measurement = Measurement.from_dict(data)
        except TypeError as exc:  # not an agent's answer (another service on that port?)
            raise DeviceUnavailable(f"{self.name}: unexpected answer: {exc}") from None
        measurement.device = self.name
        return measurement

    def measure_rounds(self, files: list[bytes], spec: RoundsSpec) -> Rounds:
        """The agent holds every file and interleaves them itself (POST /rounds).

        Args:
            files: the TFLite files' bytes, sent in one upload.
            spec: the rounds to ask the agent for.

        Returns:
            The agent's rounds, with this device's name.

        Raises:
            TrialFailed: the upload is over the agent's limit, or the agent refused the
                files (400, 413, 422).
            DeviceUnavailable: no answer after the retries, a rejected token, or an answer
                that is not an agent's.
        """
        query = {k: v for k, v in spec.to_dict().items() if k != "timeout_s"}
        query["sizes"] = ",".join(str(len(f)) for f in files)
        self._check_upload(sum(map(len, files)))
        data = self._request(
            "POST", f"/rounds?{urlencode(query)}", b"".join(files), 2 * spec.timeout_s + 30
        )
        try:
            rounds = Rounds.from_dict(data)
        except TypeError as exc:
            raise DeviceUnavailable(f"{self.name}: unexpected answer: {exc}") from None
        rounds.device = self.name
        return rounds

    def _check_upload(self, size: int) -> None:
        limit = self._upload_limit()
        if limit is not None and size > limit:
            # Checked here: the agent answers 413 and closes while a big upload is still
            # being sent, which looks like a dead device rather than a too-big model.
            raise TrialFailed(
                f"{self.name}: the upload ({size} bytes) is over its upload limit ({limit} bytes)"
            )

    def _upload_limit(self) -> int | None:
        """The agent's upload limit in bytes, asked once."""
        if self._limit is None:
            info = self._request("GET", "/info", None, self.connect_timeout_s)
            megabytes = (info.get("limits") or {}).get("max_upload_mb")
            self._limit = int(megabytes * 2**20) if megabytes else -1
        return None if self._limit < 0 else self._limit

    def health(self) -> dict[str, Any]:
        """The agent's own report on itself (GET /health), retried like a measurement.

        Returns:
            The agent's answer, as JSON.

        Raises:
            DeviceUnavailable: no answer after the retries, or a rejected token.
        """
        return self._request("GET", "/health", None, self.connect_timeout_s)

    def ping(self) -> None:
        # A probe, not a measurement: no retries, fail fast.
        self._request("GET", "/health", None, self.connect_timeout_s, retries=0)

    def describe(self) -> dict[str, Any]:
        """This client's name and URL with what the agent says of its device (GET /info).

        Returns:
            ``name``, ``spec`` (the base URL) and the agent's ``/info`` answer.

        Raises:
            DeviceUnavailable: no answer after the retries, or a rejected token.
        """
        info = self._request("GET", "/info", None, self.connect_timeout_s)
        return {"name": self.name, "spec": self.base, **info}

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        timeout: float,
        retries: int | None = None,
    ) -> Any:
        headers = {"Content-Type": "application/octet-stream"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        retries = self.retries if retries is None else retries
        last = ""
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(self.base + path, body, headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=timeout, context=self._context) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError as exc:
                reason = _error_text(exc)
                if exc.code in MODEL_ERRORS:
                    raise TrialFailed(
                        f"{self.name} refused the model ({exc.code}): {reason}"
                    ) from None
                if exc.code in (401, 403):
                    raise DeviceUnavailable(
                        f"{self.name} rejected the token ({exc.code})"
                    ) from None
                if exc.code not in TRANSIENT:
                    raise DeviceUnavailable(f"{self.name} answered {exc.code}: {reason}") from None
                last = f"{exc.code}: {reason}"
            except (OSError, ValueError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"  # refused, reset, cut reply, bad JSON
        raise DeviceUnavailable(f"{self.name} did not answer after {retries + 1} attempts ({last})")


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error", exc.reason))
    except (OSError, ValueError, AttributeError):
        return str(exc.reason)


def _token(token_file: str | None, spec: str) -> str | None:
    path = token_file or os.environ.get("DEVICEFIT_TOKEN_FILE")
    if token_file is None and os.environ.get("DEVICEFIT_TOKEN"):
        return os.environ["DEVICEFIT_TOKEN"]
    if not path:
        return None
    try:
        return Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise UsageError(
            f"--device {spec!r}: cannot read token file {path}: {exc.strerror}"
        ) from None
