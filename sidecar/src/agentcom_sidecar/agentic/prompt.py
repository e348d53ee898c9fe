"""The conversation a task starts with: a system prompt and the task as the user's message."""

from collections.abc import Mapping
from typing import Any, cast

_RULES = """## How to work
1. Understand: list folders, read the files involved, search for what you need.
2. Change: write whole files with write_file. Always read a file before you replace it.
3. Check: run the tests or the command that proves the change, with run_command.
4. When the task is done, answer with a short summary of what you changed and no tool call.

## Rules
- Call tools to do the work; do not just describe what you would do.
- Paths are relative to the workspace root; nothing outside it can be read or written.
- Commands have no network access, a timeout and memory limits; .git is read-only (the
  sidecar commits your work).
- If a tool call fails, read its error code and fix the call. If you are stuck, say what is
  missing and stop.
- If your model cannot call tools natively, write one call per turn as
  <tool_call>{"name": "read_file", "arguments": {"path": "README.md"}}</tool_call>"""


def _items(task: Mapping[str, Any], key: str) -> list[object]:
    value = task.get(key)
    return cast(list[object], value) if isinstance(value, list) else []


def _hints(task: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for hint in _items(task, "file_hints"):
        if isinstance(hint, dict):  # {path, reason} from the queue; goal tasks may send strings
            fields = cast(dict[str, object], hint)
            path, reason = str(fields.get("path", "")), str(fields.get("reason") or "")
            lines.append(f"- {path}: {reason}" if reason else f"- {path}")
        else:
            lines.append(f"- {hint}")
    return lines


def _checks(task: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for step in _items(task, "verification_steps"):
        if isinstance(step, dict):
            fields = cast(dict[str, object], step)
            detail = fields.get("command") or fields.get("path") or ""
            lines.append(f"- {fields.get('type')}: {detail}".rstrip(": "))
    return lines


def system_prompt(task: Mapping[str, Any]) -> str:
    head = [
        "You are a coding agent. You complete tasks in a git workspace by reading files, "
        "changing them and checking your work with the tools you are given."
    ]
    if task.get("repo"):
        head.append(f"Repository: {task['repo']}")
    if task.get("branch"):
        head.append(f"Branch: {task['branch']}")
    sections = ["\n".join(head)]
    if hints := _hints(task):
        sections.append("## Key files\n" + "\n".join(hints))
    criteria = [f"- {c}" for c in _items(task, "success_criteria")]
    if criteria:
        sections.append("## Success criteria\n" + "\n".join(criteria))
    if checks := _checks(task):
        sections.append("## How your work will be checked\n" + "\n".join(checks))
    sections.append(_RULES)
    return "\n\n".join(sections)


def initial_messages(
    task: Mapping[str, Any], attempt: int, feedback: str | None
) -> list[dict[str, Any]]:
    user = str(task.get("description") or "")
    if feedback:
        user = (
            f"{user}\n\n## Attempt {attempt}: the previous attempt failed these checks\n"
            f"{feedback}\n\nFix what failed; keep what already passes."
        )
    return [{"role": "system", "content": system_prompt(task)}, {"role": "user", "content": user}]
