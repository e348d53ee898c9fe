from nats.js import JetStreamContext
from opentelemetry.sdk.trace import TracerProvider

from agentcom_common import messaging, subjects
from agentcom_common.contracts.base import Contract
from agentcom_common.settings import CommonSettings


class Ping(Contract):
    n: int


async def test_streams_can_be_ensured_again_with_changed_settings(
    js: JetStreamContext, settings: CommonSettings
) -> None:
    from datetime import timedelta

    changed = settings.model_copy(update={"events_max_age": timedelta(hours=1)})
    await messaging.ensure_streams(js, changed)

    info = await js.stream_info(subjects.EVENTS_STREAM)
    assert info.config.max_age == 3600
    assert {s.config.name for s in [info]} == {subjects.EVENTS_STREAM}


async def test_same_msg_id_is_stored_once(js: JetStreamContext) -> None:
    subject = subjects.event("hub", "test_ping")
    first = await messaging.publish(js, subject, Ping(n=1), msg_id="ping-1")
    second = await messaging.publish(js, subject, Ping(n=1), msg_id="ping-1")

    assert not first.duplicate
    assert second.duplicate
    assert (await js.stream_info(subjects.EVENTS_STREAM)).state.messages == 1


async def test_trace_context_travels_in_headers(js: JetStreamContext) -> None:
    subject = subjects.event("hub", "test_ping")
    sub = await js.subscribe(subject)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("submit") as span:
        await messaging.publish(js, subject, Ping(n=2))

    msg = await sub.next_msg(timeout=5)

    assert msg.headers is not None
    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert msg.headers["traceparent"].split("-")[1] == trace_id
