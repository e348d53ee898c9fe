"""The parser reads native, JSON-in-content and XML tool calls; code full of braces survives."""

import json
from typing import Any

from agentcom_sidecar.agentic import parser, tools

KNOWN = tools.TOOLS.keys()
CODE = "function f(){ return {a: 1}; }\nconst s = '}{';\n"


def test_native_tool_calls_with_dict_or_string_arguments() -> None:
    message: dict[str, Any] = {
        "content": "",
        "tool_calls": [
            {"function": {"name": "read_file", "arguments": {"path": "a.py"}}},
            {"function": {"name": "list_directory", "arguments": '{"path": "."}'}},
            {"function": {"arguments": {}}},
        ],
    }

    parsed = parser.parse(message, KNOWN)

    assert parsed.source == "native"
    assert parsed.calls == [
        parser.ToolCall("read_file", {"path": "a.py"}),
        parser.ToolCall("list_directory", {"path": "."}),
    ]


def test_json_in_content_with_braces_in_code_arguments() -> None:
    call = {"name": "write_file", "arguments": {"path": "f.js", "content": CODE}}
    content = f"I will write the file.\n```json\n{json.dumps(call)}\n```\n"

    parsed = parser.parse({"content": content}, KNOWN)

    assert parsed.source == "json"
    assert parsed.calls == [parser.ToolCall("write_file", {"path": "f.js", "content": CODE})]


def test_json_list_of_calls_and_stray_braces_before_it() -> None:
    calls = [
        {"name": "read_file", "arguments": {"path": "a"}},
        {"name": "read_file", "parameters": {"path": "b"}},
    ]
    content = "set {x} first, then " + json.dumps(calls)

    parsed = parser.parse({"content": content}, KNOWN)

    assert [c.arguments["path"] for c in parsed.calls] == ["a", "b"]


def test_json_naming_no_known_tool_is_a_final_answer() -> None:
    content = 'Done. The config is {"name": "server", "arguments": {"port": 80}}.'

    parsed = parser.parse({"content": content}, KNOWN)

    assert (parsed.calls, parsed.source) == ([], "none")
    assert parsed.text == content


def test_xml_tool_call_with_json_inside() -> None:
    call = {"name": "write_file", "arguments": {"path": "f.js", "content": CODE}}
    content = f"Writing.\n<tool_call>\n{json.dumps(call)}\n</tool_call>"

    parsed = parser.parse({"content": content}, KNOWN)

    assert parsed.source == "xml"
    assert parsed.calls == [parser.ToolCall("write_file", {"path": "f.js", "content": CODE})]
    assert parsed.text == "Writing."


def test_qwen_function_xml_keeps_strings_and_decodes_lists() -> None:
    content = (
        "<tool_call>\n<function=write_file>\n<parameter=path>\nflag.txt\n</parameter>\n"
        "<parameter=content>\ntrue\n</parameter>\n</function>\n</tool_call>\n"
        "<tool_call><function=run_command><parameter=command>"
        '["python", "-c", "print({})"]</parameter></function></tool_call>'
    )

    parsed = parser.parse({"content": content}, KNOWN)

    assert parsed.calls == [
        parser.ToolCall("write_file", {"path": "flag.txt", "content": "true"}),
        parser.ToolCall("run_command", {"command": ["python", "-c", "print({})"]}),
    ]


def test_thinking_is_stripped_before_parsing() -> None:
    think = '<think>maybe {"name": "read_file", "arguments": {"path": "x"}}</think>'
    parsed = parser.parse({"content": f"{think}All done."}, KNOWN)

    assert (parsed.calls, parsed.text) == ([], "All done.")


def test_empty_reply_has_neither_calls_nor_text() -> None:
    parsed = parser.parse({"content": "  <think>hmm</think> "}, KNOWN)

    assert (parsed.calls, parsed.text) == ([], "")


def test_call_key_is_the_same_for_reordered_arguments() -> None:
    a = parser.ToolCall("read_file", {"path": "a", "start_line": 1})
    b = parser.ToolCall("read_file", {"start_line": 1, "path": "a"})

    assert a.key() == b.key()
