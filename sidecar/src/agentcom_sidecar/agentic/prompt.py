"""The conversation a task starts with: a system prompt and the task as the user's message.

The prompt says what holds for commands on this machine: no network and a read-only `.git`
only when they really run isolated (the model would otherwise rely on a sandbox that is not
there, or be told of limits that do not exist).
"""

from collections.abc import Mapping
from typing import Any, cast

_RULES = """## How to work
1. Understand: list folders, read the files involved, search for what you need.
2. Change: write whole files with write_file. Always read a file before you replace it.
3. Check: run the tests or the command that proves the change, with run_command.
4. When the task is done, answer with a short summary of what you changed and no tool call.

## Rules
- Call tools to do the work; do not just describe what you would do.
- Paths are relative to the workspace root; the file tools read and write nothing outside it.
- {commands}
- If a tool call fails, read its error code and fix the call. If you are stuck, say what is
  missing and stop.
- If your model cannot call tools natively, write one call per turn as
  <tool_call>{{"name": "read_file", "arguments": {{"path": "README.md"}}}}</tool_call>"""
_ISOLATED = """Commands run in a sandbox: no network access, a timeout and memory limits; only the
  workspace and $TMPDIR are writable, and .git is read-only (the sidecar commits your work)."""
_UNISOLATED = """Commands have a timeout and memory limits but no sandbox: they run on this
  machine as the agent's user and can reach the network. Do not touch .git, files outside the
  workspace or the network unless the task asks for it (the sidecar commits your work)."""


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


def system_prompt(task: Mapping[str, Any], isolated: bool) -> str:
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
    sections.append(_RULES.format(commands=_ISOLATED if isolated else _UNISOLATED))
    return "\n\n".join(sections)


def initial_messages(
    task: Mapping[str, Any], attempt: int, feedback: str | None, isolated: bool
) -> list[dict[str, Any]]:
    user = str(task.get("description") or "")
    if feedback:
        user = (
            f"{user}\n\n## Attempt {attempt}: the previous attempt failed these checks\n"
            f"{feedback}\n\nFix what failed; keep what already passes."
        )
    return [
        {"role": "system", "content": system_prompt(task, isolated)},
        {"role": "user", "content": user},
    ]
