"""`micro.call`: a reply comes back as its model, a refusal as the error class that raised it.

A small nats.micro service of the test's own, served by `micro.endpoint` on a real NATS, raises
each class of the hierarchy on demand; the queue's own refusals are in the queue's tests
(`test_rpc_client.py`), since this library's tests import no service.
"""

from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

from agentcom_common import micro
from agentcom_common.contracts.base import Request
from agentcom_common.contracts.task import ClaimTask, TaskView
from agentcom_common.errors import (
    AgentcomError,
    ConflictError,
    DuplicateError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    StaleGenerationError,
    TooLargeError,
    TooManyRequestsError,
    UnauthorizedError,
    UnavailableError,
)


class Raise(Request):
    case: str


class Said(BaseModel):
    case: str
    times: int


class RateLimitedError(TooManyRequestsError):
    """A service's own subclass: it travels as its parent in `errors`."""

    default_code = "rate_limited"


RAISED: dict[str, AgentcomError | Exception] = {
    "not_found": NotFoundError("no task t1", code="task_not_found"),
    "invalid": InvalidError("priority: bad lane", field="priority"),
    "conflict": ConflictError("agent a1 is blocked: disk full", code="agent_blocked"),
    "stale": StaleGenerationError("task t1 is at generation 3, not 2"),
    "duplicate": DuplicateError("t1 was accepted already", code="already_accepted"),
    "unauthorized": UnauthorizedError("no token"),
    "forbidden": ForbiddenError("not your task", code="wrong_agent"),
    "too_large": TooLargeError("result over 256 KiB", code="result_too_large"),
    "rate_limited": RateLimitedError("10/s at most", retry_after=0.2504),
    "unavailable": UnavailableError("Postgres is away", code="db_unavailable", retry_after=3),
    "unexpected": RuntimeError("secret internals"),
}


@pytest.fixture
async def raiser(nc: Client) -> AsyncIterator[None]:
    async def op(body: Raise) -> Said:
        if body.case in RAISED:
            raise RAISED[body.case]
        return Said(case=body.case, times=1)

    service, group = await micro.start(nc, "raiser", "raiser", "0.0.1", "raises on demand")
    await group.add_endpoint(name="raise", handler=micro.endpoint(Raise, op))
    yield
    await service.stop()


async def _refusal(nc: Client, case: str) -> AgentcomError:
    with pytest.raises(AgentcomError) as caught:
        await micro.call(nc, "raiser", "raise", Raise(case=case), Said)
    return caught.value


@pytest.mark.parametrize(
    ("case", "cls"),
    [
        ("not_found", NotFoundError),
        ("invalid", InvalidError),
        ("conflict", ConflictError),
        ("stale", StaleGenerationError),
        ("duplicate", DuplicateError),
        ("unauthorized", UnauthorizedError),
        ("forbidden", ForbiddenError),
        ("too_large", TooLargeError),
    ],
)
async def test_each_error_class_comes_back_as_itself(
    raiser: None, nc: Client, case: str, cls: type[AgentcomError]
) -> None:
    sent = RAISED[case]
    assert isinstance(sent, AgentcomError)

    got = await _refusal(nc, case)

    assert type(got) is cls
    assert (got.code, got.detail, got.field) == (sent.code, sent.detail, sent.field)


async def test_a_service_subclass_comes_back_as_its_parent_with_the_wait(
    raiser: None, nc: Client
) -> None:
    got = await _refusal(nc, "rate_limited")

    assert type(got) is TooManyRequestsError
    assert got.code == "rate_limited"
    assert got.retry_after == 0.251  # to the millisecond, rounded up; Retry-After says 1


async def test_unavailable_keeps_its_code_and_wait(raiser: None, nc: Client) -> None:
    got = await _refusal(nc, "unavailable")

    assert isinstance(got, UnavailableError)
    assert (got.code, got.retry_after) == ("db_unavailable", 3.0)


async def test_an_unexpected_failure_is_internal_without_its_text(raiser: None, nc: Client) -> None:
    got = await _refusal(nc, "unexpected")

    assert type(got) is AgentcomError
    assert got.code == "internal"
    assert "secret" not in got.detail


async def test_the_wire_still_names_the_code_for_raw_readers(raiser: None, nc: Client) -> None:
    reply = await nc.request("agentcom.rpc.raiser.raise", b'{"case": "duplicate"}', timeout=5)

    assert reply.headers is not None
    assert reply.headers["Nats-Service-Error-Code"] == "already_accepted"
    assert reply.headers["Nats-Service-Error"] == "t1 was accepted already"


async def test_a_reply_decodes_into_its_model(raiser: None, nc: Client) -> None:
    said = await micro.call(nc, "raiser", "raise", Raise(case="fine"), Said)

    assert said == Said(case="fine", times=1)


async def test_a_reply_that_is_not_the_model_is_bad_reply(raiser: None, nc: Client) -> None:
    with pytest.raises(AgentcomError) as caught:
        await micro.call(nc, "raiser", "raise", Raise(case="fine"), TaskView)

    assert caught.value.code == "bad_reply"
    assert "TaskView" in caught.value.detail


async def test_no_responders_is_the_service_unavailable(nc: Client) -> None:
    with pytest.raises(UnavailableError) as caught:
        await micro.call(nc, "queue", "claim", ClaimTask(agent_id="a1"), TaskView)

    assert caught.value.code == "queue_unavailable"


async def test_a_silent_responder_times_out_as_unavailable(nc: Client) -> None:
    await nc.subscribe("agentcom.rpc.mute.claim")  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks

    with pytest.raises(UnavailableError) as caught:
        await micro.call(nc, "mute", "claim", ClaimTask(agent_id="a1"), TaskView, timeout=0.2)

    assert caught.value.code == "mute_unavailable"


async def test_the_endpoint_continues_the_callers_trace(
    raiser: None, nc: Client, spans: InMemorySpanExporter
) -> None:
    with trace.get_tracer("test").start_as_current_span("caller") as caller:
        await micro.call(nc, "raiser", "raise", Raise(case="fine"), Said)
    ours = caller.get_span_context()
    (served,) = [
        s
        for s in spans.get_finished_spans()
        if s.name == "agentcom.rpc.raiser.raise"
        and s.context is not None
        and s.context.trace_id == ours.trace_id
    ]
    assert served.parent is not None
    assert served.parent.span_id == ours.span_id
    assert served.kind is trace.SpanKind.SERVER
