"""The fake model server and our gateway client both speak Ollama's chat protocol, checked with
the official `ollama` client and its types (so the loop tests do not test against a dialect)."""

from pathlib import Path

import ollama

from agentcom_common.testing import task_view
from agentcom_sidecar.agentic import executors, tools
from agentcom_sidecar.agentic.settings import AgenticSettings
from agentcom_sidecar.executors.base import ExecutionContext
from fake_ollama import FakeModel, call, reply


async def test_the_official_client_reads_the_fake_servers_tool_calls(model: FakeModel) -> None:
    model.play(reply(tool_calls=[call("read_file", path="calc.py")], tokens=(12, 3)))
    client = ollama.AsyncClient(host=model.url)
    try:
        # the Callable member of its `tools` union is unparameterised in ollama's stubs
        response = await client.chat(  # pyright: ignore[reportUnknownMemberType]
            model="qwen3:8b",
            messages=[{"role": "user", "content": "fix it"}],
            tools=tools.function_specs(),
        )
    finally:
        await client.close()

    assert response.message.tool_calls is not None
    function = response.message.tool_calls[0].function
    assert (function.name, dict(function.arguments)) == ("read_file", {"path": "calc.py"})
    assert (response.prompt_eval_count, response.eval_count) == (12, 3)
    ours = set(model.requests[0])
    assert {"model", "messages", "tools", "stream"} <= ours


async def test_our_requests_are_valid_ollama_messages_and_tools(
    model: FakeModel, workspace: Path
) -> None:
    model.play(
        reply(tool_calls=[call("read_file", path="calc.py")]),
        reply(content="The bug is on line 2."),
    )
    settings = AgenticSettings(agentic_gateway_url=model.url)
    ctx = ExecutionContext(
        task=task_view(id="t", description="look"),
        agent_id="a",
        generation=1,
        workspace=workspace,
        deadline=float("inf"),
    )

    await executors.build("ollama", settings).run(ctx)

    second = model.requests[1]
    messages = [ollama.Message.model_validate(m) for m in second["messages"]]
    specs = [ollama.Tool.model_validate(t) for t in second["tools"]]
    assert [m.role for m in messages] == ["system", "user", "assistant", "tool"]
    assert messages[2].tool_calls is not None
    assert messages[2].tool_calls[0].function.name == "read_file"
    assert messages[3].tool_name == "read_file"
    assert [s.function.name for s in specs if s.function] == list(tools.TOOLS)
