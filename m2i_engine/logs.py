"""Structured logs that carry one request id from the chat message or HTTP request to the reply.

Front ends set the id with :func:`request_context`; every log line emitted inside it — in the API,
the queue client or a worker that runs the job — gets ``request_id`` (and ``job_id``) fields. The
JSON formatter writes one object per line; both formatters mask bearer tokens and passwords in URLs,
so a secret that slips into a message is not written out.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Iterator

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("m2i_request_id", default=None)
job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("m2i_job_id", default=None)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_SECRETS = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (re.compile(r"(?i)(token[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._~+/:=-]{6,}"), r"\1***"),
    (re.compile(r"(redis|rediss|amqp|http|https)://([^:/@\s]*):([^@\s]+)@"), r"\1://\2:***@"),
    (re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}\b"), "***"),  # Telegram bot tokens
]


def new_request_id() -> str:
    return secrets.token_hex(8)


def clean_request_id(value: str | None) -> str | None:
    """A caller-supplied id if it is safe to log and echo (short, no spaces or control characters)."""
    return value if value and _REQUEST_ID.match(value) else None


@contextlib.contextmanager
def request_context(request_id: str | None = None, job_id: str | None = None) -> Iterator[str]:
    """Tag every log line (and queued job) inside the block with ``request_id`` (made up if None)."""
    rid = request_id or request_id_var.get() or new_request_id()
    t1 = request_id_var.set(rid)
    t2 = job_id_var.set(job_id) if job_id is not None else None
    try:
        yield rid
    finally:
        request_id_var.reset(t1)
        if t2 is not None:
            job_id_var.reset(t2)


def redact(text: str) -> str:
    for pattern, repl in _SECRETS:
        text = pattern.sub(repl, text)
    return text


def _install_record_factory() -> None:
    """Every log record of the process carries the context's ids, whichever handler formats it."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_m2i", False):
        return

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = request_id_var.get()
        record.job_id = job_id_var.get()
        return record

    factory._m2i = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_install_record_factory()


class ContextFilter(logging.Filter):
    """Adds ``request_id``/``job_id`` from the context to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get()
        if not getattr(record, "job_id", None):
            record.job_id = job_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id, job_id, plus ``extra`` fields."""

    _STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in self._STD and not key.startswith("_") and value is not None:
                doc[key] = value if isinstance(value, int | float | bool) else redact(str(value))
        if record.exc_info:
            doc["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(service: str, *, fmt: str = "json", level: str = "INFO") -> None:
    """Configure the root logger once per process (``m2i serve`` / ``m2i worker``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("aiohttp.access", "dramatiq.worker.ConsumerThread", "numba"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
