"""Logging for the bridge: one JSON object per line (for journald, Loki, ...) or plain text, and a filter
that masks every configured secret wherever it shows up (message, arguments, exception text, extra fields).

    handler = configure_logging(level="INFO", fmt="json", secrets=config.secret_values())

Nothing here runs at import time; configure_logging() is called once by the command line.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import IO, Any
from urllib.parse import quote

MASK = "***"
FORMATS = ("json", "text")

# Attributes every LogRecord has; anything else on a record came from `extra=` and is worth printing.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class SecretMaskFilter(logging.Filter):
    """Replaces each secret value (and its URL-encoded form) with '***' in everything a record will print.

    Attach it to a handler (it then sees records from every logger). Empty secrets are ignored; longer
    secrets are replaced first so a secret that contains another one is masked whole."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Masks more values from now on (e.g. a token learned after start)."""
        values = set(self._secrets)
        for secret in secrets:
            if secret:
                values.add(secret)
                encoded = quote(secret, safe="")
                if encoded != secret:
                    values.add(encoded)
        self._secrets = sorted(values, key=len, reverse=True)

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        record.msg = self.mask(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_ATTRS:
                setattr(record, name, self._mask_value(value))
        return True

    def _mask_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {k: self._mask_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._mask_value(v) for v in value)
        return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, logger, msg, any `extra=` fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRS and not name.startswith("_"):
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2026-01-01T12:00:00.000Z INFO citynode.bridge: message key=value ...`"""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        line = f"{ts} {record.levelname} {record.name}: {record.getMessage()}"
        extras = [f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")]
        if extras:
            line += " " + " ".join(extras)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


def make_handler(fmt: str = "text", secrets: Iterable[str] = (), stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler with the chosen format and the secret mask."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(SecretMaskFilter(secrets))
    return handler


def configure_logging(level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = (),
                      stream: IO[str] | None = None) -> logging.Handler:
    """Replaces the root logger's handlers with one masked handler; returns it (tests remove it again)."""
    handler = make_handler(fmt, secrets, stream)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # paho logs every packet at DEBUG through our loggers only when asked; keep third-party noise down.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    return handler
