"""JSON logging: one line per event, with service name, trace id and secrets redacted.

Library code only does `log = logging.getLogger(__name__)` and logs an event name with facts in
`extra`; `configure()` runs once in a process's `__main__`. Redaction happens in the formatter,
on the final text, so no path (message, args, extra, traceback) can carry a secret past it.
"""

import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from opentelemetry import trace

REDACTED: Final = "[REDACTED]"

# an `extra` key naming a secret (`token`, `admin_token`, `api_key`) has its value dropped whole;
# `token_id` and friends are identifiers, not secrets, and stay
_SECRET_KEY = re.compile(
    r"^(.*[_-])?(pass(word|wd)?|secret|token|api[_-]?key|authorization|credentials?|"
    r"private[_-]?key|cookie|dsn|database_url)$",
    re.IGNORECASE,
)
_KEEP_KEY = rf"\g<1>{REDACTED}"
_RULES: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # Authorization headers and bare bearer tokens
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\g<1> {REDACTED}"),
    # our own tokens, OpenAI/Anthropic-style keys, GitHub tokens, AWS access key ids
    (re.compile(r"\bagc_[A-Za-z0-9_-]{8,}"), REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), REDACTED),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{16,}"), REDACTED),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), REDACTED),
    # key=value and "key": "value" pairs whose key looks secret
    (
        re.compile(
            r"(?i)((?:pass(?:word|wd)?|secret|token|api[_-]?key|authorization)[\"']?\s*[:=]\s*[\"']?)"
            r"(?!\[REDACTED\])[^\s\"',;&]+"
        ),
        _KEEP_KEY,
    ),
    # credentials inside URLs: scheme://user:password@host
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), rf"\g<1>{REDACTED}@"),
)

_RECORD_FIELDS: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


def redact(text: str) -> str:
    """Replace every secret-looking part of `text` with [REDACTED]."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def _scrub(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): _scrub(str(k), v) for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    return value


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line; `service` names the process."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "event": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = f"{span.trace_id:032x}"
            line["span_id"] = f"{span.span_id:016x}"
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                line[key] = _scrub(key, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str, ensure_ascii=False))


def configure(service: str, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log record of this process to `stream` (stderr) as redacted JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn installs its own handlers; route its records through ours instead
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
