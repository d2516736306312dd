"""Structured logging for the server process: one JSON object per line (or plain text).

Only what ops need and nothing personal: time, level, logger, message, and the RPC fields the
interceptor attaches (rpc, code, ms, request_id, token_id). Biometric data and personal fields never
reach a log call in the first place; this module only formats.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys

__all__ = ["JsonFormatter", "iso_time", "setup_logging"]

_FIELDS = ("rpc", "code", "ms", "request_id", "token_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(fmt: str = "json", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def iso_time(t: float | None) -> str:
    """A Unix time for people (command output, console pages): ``2026-12-04 18:52 UTC``; "—" for None."""
    if t is None:
        return "—"
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
