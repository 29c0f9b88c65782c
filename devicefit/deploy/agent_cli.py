"""``devicefit agent`` command line; stdlib only, so it runs where only [agent] is installed."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from devicefit.deploy.agent import AgentConfig, AgentConfigError, serve

EXAMPLE = """examples:
  devicefit agent                                   # 127.0.0.1:8765, no token
  DEVICEFIT_TOKEN=$(openssl rand -hex 24) devicefit agent --host 0.0.0.0
  devicefit agent --host 0.0.0.0 --token-file ~/.devicefit-token \\
      --certfile cert.pem --keyfile key.pem"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Raise instead of printing usage and exiting, so ``main`` reports it like other errors.

        Args:
            message: argparse's description of the bad command line.

        Returns:
            Never returns.

        Raises:
            AgentConfigError: always, with ``message``.
        """
        raise AgentConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    """The ``devicefit agent`` argument parser.

    Returns:
        A parser whose errors raise AgentConfigError instead of exiting.
    """
    p = _Parser(
        prog="devicefit agent",
        description="Serve TFLite latency, memory, energy and temperature measurements "
        "of this device over HTTP.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks one)")
    p.add_argument(
        "--token-file",
        help="file holding the bearer token (else $DEVICEFIT_TOKEN); required beyond loopback",
    )
    p.add_argument("--max-upload-mb", type=float, default=256.0, dest="max_upload_mb")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement")
    p.add_argument(
        "--memory-mb",
        type=int,
        default=4096,
        dest="memory_mb",
        help="address-space limit of the measuring process (0: none)",
    )
    p.add_argument("--certfile", help="TLS certificate (PEM); serves HTTPS with --keyfile")
    p.add_argument("--keyfile", help="TLS private key (PEM)")
    return p


def read_token(token_file: str | None) -> str | None:
    """The bearer token clients must send: from ``token_file``, else ``$DEVICEFIT_TOKEN``.

    Args:
        token_file: the ``--token-file`` path (``~`` expanded), or None to use the environment.

    Returns:
        The token with surrounding whitespace removed; None when no file is given and the
        variable is unset or empty (then the agent asks for no token).

    Raises:
        AgentConfigError: the file cannot be read or is empty.
    """
    if token_file:
        path = Path(token_file).expanduser()
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise AgentConfigError(f"--token-file: cannot read {path}: {exc.strerror}") from None
        if not token:
            raise AgentConfigError(f"--token-file: {path} is empty")
        return token
    return os.environ.get("DEVICEFIT_TOKEN") or None


def main(argv: list[str]) -> int:
    """Run ``devicefit agent`` until interrupted.

    Args:
        argv: the arguments after ``devicefit agent``.

    Returns:
        The exit code: 0 after a clean stop, 2 when the command line or configuration is
        refused or the server cannot start (the message is printed to stderr).
    """
    try:
        args = build_parser().parse_args(argv)
        config = AgentConfig(
            host=args.host,
            port=args.port,
            token=read_token(args.token_file),
            max_upload_mb=args.max_upload_mb,
            timeout_s=args.timeout,
            memory_mb=args.memory_mb or None,
            certfile=args.certfile,
            keyfile=args.keyfile,
        )
        serve(config)
    except AgentConfigError as exc:
        print(f"devicefit agent: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # address in use, unreadable certificate, ...
        print(f"devicefit agent: error: {exc}", file=sys.stderr)
        return 2
    return 0
