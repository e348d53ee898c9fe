"""The conversation a task starts with: a system prompt and the task as the user's message.

The prompt says what holds for commands on this machine: no network and a read-only `.git`
only when they really run isolated (the model would otherwise rely on a sandbox that is not
there, or be told of limits that do not exist).
"""

from typing import Any

from agentcom_common.contracts.task import FileExists, GitClean, TaskView

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


def _hints(task: TaskView) -> list[str]:
    return [f"- {h.path}: {h.reason}" if h.reason else f"- {h.path}" for h in task.file_hints]


def _checks(task: TaskView) -> list[str]:
    lines: list[str] = []
    for step in task.verification_steps:
        detail = (
            step.path
            if isinstance(step, FileExists)
            else ""
            if isinstance(step, GitClean)
            else step.command
        )
        lines.append(f"- {step.type}: {detail}".rstrip(": "))
    return lines


def system_prompt(task: TaskView, isolated: bool) -> str:
    head = [
        "You are a coding agent. You complete tasks in a git workspace by reading files, "
        "changing them and checking your work with the tools you are given."
    ]
    if task.repo:
        head.append(f"Repository: {task.repo}")
    if task.branch:
        head.append(f"Branch: {task.branch}")
    sections = ["\n".join(head)]
    if hints := _hints(task):
        sections.append("## Key files\n" + "\n".join(hints))
    criteria = [f"- {c}" for c in task.success_criteria]
    if criteria:
        sections.append("## Success criteria\n" + "\n".join(criteria))
    if checks := _checks(task):
        sections.append("## How your work will be checked\n" + "\n".join(checks))
    sections.append(_RULES.format(commands=_ISOLATED if isolated else _UNISOLATED))
    return "\n\n".join(sections)


def initial_messages(
    task: TaskView, attempt: int, feedback: str | None, isolated: bool
) -> list[dict[str, Any]]:
    user = task.description
    if feedback:
        user = (
            f"{user}\n\n## Attempt {attempt}: the previous attempt failed these checks\n"
            f"{feedback}\n\nFix what failed; keep what already passes."
        )
    return [
        {"role": "system", "content": system_prompt(task, isolated)},
        {"role": "user", "content": user},
    ]
