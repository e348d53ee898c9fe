"""One trace per task: its id follows from the task id, so every service can join it.

The hot paths move tasks in batches (group-committed submits, one claim statement for many
agents, report batches), and the sidecar runs a task from its journal, possibly after a
restart: a `traceparent` carried by the message that caused the work names the batch's or the
request's trace, not the task's. So a task's trace is derived from its id instead:

    trace id      the task id's 16 hex digits, left-padded with zeros to 32 (`task-1f…`
                  is trace `00000000000000001f…`; Tempo and Jaeger find it by the short form)
    root span id  the same 16 hex digits

The queue records that root span when it creates the task (`record_root`, linked to the
submitting request's span); every other span of the task (`span`, `record`) is a child of it,
linked to whatever span was current, so the batch or request that did the work is one click
away. A task id of another form gets both from a hash of it.

The W3C context still travels in NATS and HTTP headers: a handler that works inside a task
span publishes with it (the inbox assignment, the agent loop's gateway calls), so what the
receiver does joins the same trace either way.

Spans are only built when the process exports them (`Provider.exports`: a span processor was
added, i.e. OTLP is configured): without one the SDK builds each span, with its attributes and
links, only to drop it, and the queue built a root per submitted task, the scheduler a span per
assignment. Then `record_roots` and `record` do nothing, and `span` makes the task's root
current instead of a new span, so the trace context still travels.
"""

import contextlib
import functools
import hashlib
import string
from collections.abc import Generator, Iterable, Mapping
from contextvars import ContextVar
from typing import Final

from opentelemetry import context as otel_context, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.util.types import AttributeValue

TASK_ID: Final = "agentcom.task.id"
_HEX: Final = frozenset(string.hexdigits.lower())
_forced: ContextVar[tuple[int, int] | None] = ContextVar("agentcom_forced_ids", default=None)


class TaskIds(RandomIdGenerator):
    """Random ids, except for a task's root span: the tracer provider's id generator
    (`telemetry.configure`); without it a root would get random ids and its children would be
    orphans under the derived ones."""

    def generate_trace_id(self) -> int:
        forced = _forced.get()
        return forced[0] if forced is not None else super().generate_trace_id()

    def generate_span_id(self) -> int:
        forced = _forced.get()
        return forced[1] if forced is not None else super().generate_span_id()


class Provider(TracerProvider):
    """The SDK's tracer provider, knowing whether anything receives its spans."""

    exports: bool = False

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self.exports = True


def exporting(provider: trace.TracerProvider | None = None) -> bool:
    """Whether a finished span of `provider` (the process's by default) goes anywhere: False
    only for our `Provider` with no span processor (another provider is assumed to keep what
    it is given)."""
    provider = provider or trace.get_tracer_provider()
    return not isinstance(provider, Provider) or provider.exports


@functools.cache
def tracer(scope: str) -> trace.Tracer:
    """`scope`'s tracer, looked up once: before the provider is installed OTel hands out a
    proxy that follows it, so caching it is safe."""
    return trace.get_tracer(scope)


def ids(task_id: str) -> tuple[int, int]:
    """(trace id, root span id) of `task_id`'s trace (the module docstring says how)."""
    tail = task_id.removeprefix("task-")
    if len(tail) == 16 and set(tail) <= _HEX and int(tail, 16):
        number = int(tail, 16)
        return number, number
    digest = hashlib.blake2b(task_id.encode(), digest_size=24).digest()
    return int.from_bytes(digest[:16]) or 1, int.from_bytes(digest[16:]) or 1


def trace_id(task_id: str) -> str:
    """The task's trace id as the 32 hex digits a trace backend shows."""
    return f"{ids(task_id)[0]:032x}"


def context(task_id: str) -> Context:
    """A context whose parent span is the task's root: what a task span starts from."""
    trace_number, span_number = ids(task_id)
    root = SpanContext(
        trace_number, span_number, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    return trace.set_span_in_context(NonRecordingSpan(root), Context())


def _links(context: Context | None = None) -> list[Link]:
    current = trace.get_current_span(context).get_span_context()
    return [Link(current)] if current.is_valid else []


def record_root(
    task_id: str,
    name: str,
    scope: str,
    attributes: Mapping[str, AttributeValue] | None = None,
    cause: Context | None = None,
) -> None:
    """Record the task's root span (ended at once), linked to the span of `cause` (by default
    the current one: the request that submitted it)."""
    record_roots([(task_id, cause)], name, scope, attributes)


def record_roots(
    tasks: Iterable[tuple[str, Context | None]],
    name: str,
    scope: str,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> None:
    """`record_root` for each (task id, cause) of a batch; nothing when no span is exported."""
    if not exporting():
        return
    start = tracer(scope).start_span
    current = _links()  # the links of a task without its own cause
    for task_id, cause in tasks:
        token = _forced.set(ids(task_id))
        try:
            span = start(
                name,
                context=Context(),  # a root: the ids come from `TaskIds`
                kind=SpanKind.PRODUCER,
                attributes={TASK_ID: task_id, **(attributes or {})},
                links=current if cause is None else _links(cause),
            )
        finally:
            _forced.reset(token)
        span.end()


def record(
    task_id: str,
    name: str,
    scope: str,
    start_ns: int,
    end_ns: int | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> None:
    """Record a finished span of the task's trace, from `start_ns` to `end_ns` (now if None),
    both `time.time_ns()` clocks; linked to the current span. Nothing when no span is
    exported."""
    if not exporting():
        return
    span = tracer(scope).start_span(
        name,
        context=context(task_id),
        attributes={TASK_ID: task_id, **(attributes or {})},
        links=_links(),
        start_time=start_ns,
    )
    span.end(end_ns)


@contextlib.contextmanager
def span(
    task_id: str,
    name: str,
    scope: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Generator[trace.Span]:
    """A span of the task's trace, current for the block: what it publishes carries it on.

    When no span is exported the task's root stands in for it (a non-recording span): what
    the block publishes and logs still carries the task's trace, and nothing is built to be
    dropped (the scheduler made one per assignment)."""
    if not exporting():
        token = otel_context.attach(context(task_id))
        try:
            yield trace.get_current_span()
        finally:
            otel_context.detach(token)
        return
    with tracer(scope).start_as_current_span(
        name,
        context=context(task_id),
        kind=kind,
        attributes={TASK_ID: task_id, **(attributes or {})},
        links=_links(),
    ) as current:
        yield current
