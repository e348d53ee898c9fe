"""How a goal reads in the terminal: `goal show` (every part of a `GoalDetail`) and what
`goal watch` prints between two looks (`Follower`).

The plan is the hub's JSON as stored (the model's, or a person's edit), so every field is read
with a default: an old or hand-edited plan still shows.
"""

from dataclasses import dataclass, field
from typing import Any

from agentcom_cli.console import line
from agentcom_cli.tasks import history_line

Json = dict[str, Any]


def show(goal: Json) -> None:
    """Print a goal: what was asked, where it stands, its plan, tasks, checks, cost, history."""
    line(f"{goal['id']}  {goal['state']}  {goal['title']}")
    line(f"reason: {goal['reason']}")
    for key in ("repo", "priority", "autonomy", "source", "created_by", "attempt"):
        line(f"{key}: {goal[key]}")
    if goal["description"]:
        line(f"description: {goal['description']}")
    line("success criteria:")
    for n, criterion in enumerate(goal["success_criteria"], 1):
        line(f"  {n}. {criterion}")
    line(f"cost: {_money(goal['cost_tokens'], goal['cost_usd'])}{_budget(goal)}")
    _plan(goal.get("plan"), goal["plan_errors"])
    line(f"tasks: {goal['tasks_done']} of {goal['tasks_total']} done")
    for task in goal["tasks"]:
        line(f"  {task['task_id']}  {task['state']}  {task['kind']}  {task['title']}")
    _verifications(goal["verifications"], goal["success_criteria"])
    line("history:")
    for row in goal["history"]:
        history_line(row)


def _money(tokens: int, usd: float) -> str:
    return f"{tokens} tokens, ${usd:.4f}"


def _budget(goal: Json) -> str:
    caps = [f"{goal['budget_tokens']} tokens"] if goal["budget_tokens"] else []
    caps += [f"${goal['budget_usd']:.2f}"] if goal["budget_usd"] else []
    return f" (budget {', '.join(caps)})" if caps else " (no budget cap)"


def _plan(plan: Json | None, errors: list[str]) -> None:
    if plan is None:
        line("plan: none yet")
    else:
        tasks: list[Json] = plan.get("tasks") or []
        line(f"plan: {plan.get('summary') or f'{len(tasks)} tasks'}")
        # a dependency names an earlier task by its 1-based number or by its key
        numbers: dict[object, int] = {t["key"]: n for n, t in enumerate(tasks, 1) if t.get("key")}
        for n, task in enumerate(tasks, 1):
            _planned_task(n, task, numbers)
    for error in errors:
        line(f"  plan error: {error}")


def _planned_task(n: int, task: Json, numbers: dict[object, int]) -> None:
    refs: list[object] = task.get("depends_on") or []
    after = [str(numbers.get(ref, ref)) for ref in refs]
    estimate = f"{task.get('tier', 'standard')}, ~{task.get('estimated_tokens', '?')} tokens"
    deps = f"  after {', '.join(after)}" if after else ""
    line(f"  {n}. {task.get('title', '?')}  [{estimate}]{deps}")
    files: list[str] = task.get("files") or []
    created: list[str] = task.get("new_files") or []
    if writes := [*files, *(f"{f} (new)" for f in created)]:
        line(f"     files: {', '.join(writes)}")
    commands: list[str] = task.get("verification") or []
    for command in commands:
        line(f"     check: {command}")


def _verifications(rounds: list[Json], criteria: list[str]) -> None:
    line("verifications:" if rounds else "verifications: none yet")
    for check in rounds:
        report: Json = check["report"]
        verdict = "passed" if check["passed"] else "not passed"
        summary = f": {report['summary']}" if report.get("summary") else ""
        line(f"  round {check['round']}  {verdict}  {check['at']}{summary}")
        verdicts: list[Json] = report.get("criteria") or []
        for found in verdicts:
            _criterion(found, criteria)
        unread: list[str] = report.get("errors") or []
        for error in unread:
            line(f"    the judge's answer could not be read: {error}")


def _criterion(found: Json, criteria: list[str]) -> None:
    n: int = found.get("criterion", 0)
    text = criteria[n - 1] if 0 < n <= len(criteria) else f"criterion {n}"
    if found.get("met"):
        line(f"    {n}. met      {text}: {found.get('evidence') or '-'}")
    else:
        critical = " (critical)" if found.get("critical") else ""
        line(f"    {n}. not met  {text}{critical}: gap: {found.get('gap') or '-'}")


@dataclass
class Follower:
    """What `goal watch` has already printed of a goal, so each look prints only changes."""

    goal_id: str
    history: int = 0
    tasks: dict[str, str] = field(default_factory=dict[str, str])
    reason: str = ""

    def changes(self, goal: Json) -> list[Json]:
        """The goal's new moves, its tasks' new states and a new reason (the driver says why a
        goal waits without moving: "waiting to retry: …"), each a JSON-able record."""
        found: list[Json] = []
        for row in goal["history"][self.history :]:
            found.append({"kind": "goal"} | row)
            self.reason = row["reason"]
        self.history = len(goal["history"])
        for task in goal["tasks"]:
            before = self.tasks.get(task["task_id"])
            if before != task["state"]:
                found.append(
                    {"kind": "task", "goal_id": self.goal_id, "task_id": task["task_id"]}
                    | {"task_kind": task["kind"], "title": task["title"]}
                    | {"from_state": before, "to_state": task["state"]}
                )
                self.tasks[task["task_id"]] = task["state"]
        if goal["reason"] != self.reason:
            self.reason = goal["reason"]
            found.append({"kind": "reason", "goal_id": self.goal_id, "reason": self.reason})
        return found


def print_change(change: Json) -> None:
    if change["kind"] == "goal":
        history_line(change)
    elif change["kind"] == "task":
        moved = f"{change['from_state'] or '-'} -> {change['to_state']}"
        line(f"  task {change['task_id']}  {moved}  {change['title']}")
    else:
        line(f"  now: {change['reason']}")
