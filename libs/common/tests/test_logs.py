import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from agentcom_common import logs

TOKEN = "agc_Zx8Qm2Lp9Rt4Vw7Yb1Nc5Kd3Hf6Jg0Ae2Su8Io4Pl"
API_KEY = "sk-ant-api03-Qw9Er8Ty7Ui6Op5As4Df3Gh2Jk1"
PASSWORD = "hunter2-correct-horse"


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.configure("test-service", "DEBUG", stream)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_line_with_service_and_facts(output: io.StringIO) -> None:
    logging.getLogger("agentcom.test").info(
        "task.claimed", extra={"task_id": "t1", "generation": 3}
    )

    (line,) = _lines(output)
    assert line["service"] == "test-service"
    assert line["event"] == "task.claimed"
    assert line["task_id"] == "t1"
    assert line["generation"] == 3
    assert line["level"] == "info"


def test_trace_id_of_the_current_span_is_in_the_line(output: io.StringIO) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("agentcom.test").info("inside")

    (line,) = _lines(output)
    assert line["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert trace.get_current_span().get_span_context().is_valid is False


Emit = Callable[[logging.Logger], None]
EMITTERS: list[Emit] = [
    lambda log: log.info("calling with Authorization: Bearer %s", TOKEN),
    lambda log: log.info("raw token %s in text", TOKEN),
    lambda log: log.info("llm.call", extra={"api_key": API_KEY}),
    lambda log: log.info("llm.call", extra={"headers": {"authorization": f"Bearer {TOKEN}"}}),
    lambda log: log.info("config %s", {"password": PASSWORD}),
    lambda log: log.info("connecting to postgresql://app:%s@db:5432/x", PASSWORD),
    lambda log: log.info("key in free text: %s", API_KEY),
    lambda log: log.warning("retry", extra={"detail": f"token={TOKEN}"}),
]


@pytest.mark.parametrize(
    "emit",
    EMITTERS,
    ids=["bearer", "bare-token", "extra-key", "nested-extra", "dict-arg", "url", "api-key", "kv"],
)
def test_secrets_never_reach_the_output(output: io.StringIO, emit: Emit) -> None:
    emit(logging.getLogger("agentcom.test"))

    text = output.getvalue()
    assert text.strip(), "nothing was logged"
    for secret in (TOKEN, API_KEY, PASSWORD, TOKEN[4:20], API_KEY[7:20]):
        assert secret not in text
    assert logs.REDACTED in text


def test_secret_in_an_exception_traceback_is_redacted(output: io.StringIO) -> None:
    try:
        raise ValueError(f"refused token {TOKEN}")
    except ValueError:
        logging.getLogger("agentcom.test").exception("call.failed")

    assert TOKEN not in output.getvalue()
    assert "call.failed" in output.getvalue()


def test_identifiers_that_only_look_like_secrets_stay(output: io.StringIO) -> None:
    logging.getLogger("agentcom.test").info("token.revoked", extra={"token_id": "8b05f1e571d08866"})

    (line,) = _lines(output)
    assert line["token_id"] == "8b05f1e571d08866"
