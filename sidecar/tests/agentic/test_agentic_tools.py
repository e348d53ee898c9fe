"""The tools: one definition each, exported as function-calling JSON, typed observations."""

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

from agentcom_sidecar.agentic import tools
from agentcom_sidecar.agentic.sandbox import Sandbox
from agentcom_sidecar.agentic.settings import AgenticSettings

NAMES = ["read_file", "write_file", "list_directory", "run_command", "search_files"]


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "app.py").write_text("import os\n\ndef main():\n    return os.sep\n")
    (ws / "README.md").write_text("# demo\n")
    (ws / "blob.bin").write_bytes(b"\x00\x01\x02")
    return Sandbox(ws, AgenticSettings(agentic_list_max_entries=3), env=dict(os.environ))


def test_function_specs_are_the_ollama_format_for_the_five_tools() -> None:
    specs = tools.function_specs()

    assert [s["function"]["name"] for s in specs] == NAMES
    for spec in specs:
        assert spec["type"] == "function"
        assert spec["function"]["description"]
        assert spec["function"]["parameters"]["type"] == "object"
        json.dumps(spec)  # plain JSON, nothing pydantic-specific
    write = specs[1]["function"]["parameters"]
    assert write["required"] == ["path", "content"]
    assert write["additionalProperties"] is False


async def test_read_file_returns_a_typed_observation(sandbox: Sandbox) -> None:
    obs = await tools.call("read_file", {"path": "src/app.py", "start_line": "3"}, sandbox)

    assert obs.ok
    assert obs.tool == "read_file"
    assert obs.data == {
        "path": "src/app.py",
        "content": "def main():\n    return os.sep\n",
        "start_line": 3,
        "end_line": 4,
        "total_lines": 4,
    }
    assert obs.error_code is None
    assert obs.duration_ms >= 0


async def test_write_file_keeps_true_as_text_and_creates_folders(sandbox: Sandbox) -> None:
    obs = await tools.call("write_file", {"path": "new/dir/flag.txt", "content": "true"}, sandbox)

    assert obs.ok
    assert obs.data == {"path": "new/dir/flag.txt", "bytes_written": 4, "created": True}
    assert (sandbox.root / "new" / "dir" / "flag.txt").read_text() == "true"


@pytest.mark.parametrize(
    ("name", "arguments", "code", "field"),
    [
        ("read_file", {}, "invalid_argument", "path"),
        ("write_file", {"path": "a", "content": "x", "mode": "w"}, "invalid_argument", "mode"),
        ("read_file", {"path": "a", "start_line": 0}, "invalid_argument", "start_line"),
        ("run_command", {"command": []}, "invalid_argument", "command"),
        ("delete_everything", {}, "unknown_tool", "delete_everything"),
        ("search_files", {"pattern": "("}, "invalid_regex", "pattern"),
        ("read_file", {"path": "missing.py"}, "file_not_found", "missing.py"),
        ("read_file", {"path": "blob.bin"}, "binary_file", "blob.bin"),
        ("list_directory", {"path": "README.md"}, "not_a_directory", "README.md"),
        ("run_command", {"command": ["no-such-program-xyz"]}, "command_not_found", "no-such"),
    ],
)
async def test_bad_calls_are_observations_naming_the_problem(
    sandbox: Sandbox, name: str, arguments: dict[str, object], code: str, field: str
) -> None:
    obs = await tools.call(name, arguments, sandbox)

    assert (obs.ok, obs.error_code) == (False, code)
    assert obs.error is not None
    assert field in obs.error


async def test_list_directory_is_bounded_and_marks_symlinks(sandbox: Sandbox) -> None:
    (sandbox.root / "link").symlink_to("/etc")
    everything = await tools.call("list_directory", {"path": ".", "recursive": True}, sandbox)
    python = await tools.call("list_directory", {"recursive": True, "pattern": "*.py"}, sandbox)

    assert everything.truncated
    assert everything.data is not None
    assert len(everything.data["entries"]) == 3
    assert python.data is not None
    assert python.data["entries"] == [{"name": "src/app.py", "type": "file", "size": 41}]
    listing = await tools.call("list_directory", {}, Sandbox(sandbox.root, AgenticSettings()))
    assert listing.data is not None
    assert {"name": "link", "type": "symlink", "size": None} in listing.data["entries"]


async def test_search_files_finds_matches_and_stops_at_max_results(sandbox: Sandbox) -> None:
    for i in range(5):
        (sandbox.root / f"f{i}.txt").write_text("needle\nhay\nneedle\n")
    found = await tools.call("search_files", {"pattern": "ne+dle", "max_results": 3}, sandbox)
    scoped = await tools.call("search_files", {"pattern": "os", "file_pattern": "*.py"}, sandbox)

    assert found.ok
    assert found.truncated
    assert found.data is not None
    assert len(found.data["matches"]) == 3
    assert found.data["matches"][0] == {"file": "f0.txt", "line": 1, "content": "needle"}
    assert scoped.data is not None
    assert {m["line"] for m in scoped.data["matches"]} == {1, 4}


async def test_run_command_reports_exit_code_and_output(sandbox: Sandbox) -> None:
    obs = await tools.call("run_command", {"command": "echo out; echo err >&2; exit 3"}, sandbox)

    assert obs.ok  # a failing command is a fact to observe, not a tool failure
    assert obs.data == {"exit_code": 3, "stdout": "out\n", "stderr": "err\n"}


async def test_a_catastrophic_regex_is_stopped_by_the_timeout(sandbox: Sandbox) -> None:
    (sandbox.root / "evil.txt").write_text("a" * 40 + "!\n")
    slow = Sandbox(sandbox.root, AgenticSettings(agentic_command_timeout=timedelta(seconds=1)))

    obs = await tools.call("search_files", {"pattern": "(a+)+$"}, slow)

    assert (obs.ok, obs.error_code) == (False, "timeout")
