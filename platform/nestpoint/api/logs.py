"""Structured logs: one JSON object per line, each with the request id and tenant (and the
trace id when tracing is on).

Standard-library loggers are routed through structlog's formatter, so ``log.info("msg",
extra={...})`` anywhere in the code comes out as JSON with its extra fields.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from nestpoint.context import current_tenant, request_id
from nestpoint.observability.tracing import current_trace_id


def _add_context(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    rid = request_id.get()
    if rid:
        event_dict.setdefault("request_id", rid)
    trace_id = current_trace_id()
    if trace_id:
        event_dict.setdefault("trace_id", trace_id)
    ctx = current_tenant()
    if ctx is not None:
        event_dict.setdefault("tenant_id", str(ctx.tenant_id))
        if ctx.store_id:
            event_dict.setdefault("store_id", str(ctx.store_id))
    return event_dict


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _add_context,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log duplicates our request line (which carries the request id).
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs each request's URL at INFO: a provider's URL may carry a token or a secret
    # in its query (WeCom's ``access_token=``), and a log line must never hold one.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
