"""A goal's plan: the tasks the model proposed (`Plan`), and the rules it must pass (`check`).

`check` returns every broken rule at once, each a sentence naming the task (by its 1-based
number and title), the file or the reference, so the model can fix them all in one re-prompt
and a person reading a failed goal sees why:
- 1 to `MAX_TASKS` tasks; task keys unique;
- dependencies form a DAG over earlier tasks: no unknown, self, forward or cyclic reference;
- every file a task touches is in the repo's tree at HEAD, or is created (`new_files`) by the
  task itself or by one it depends on, directly or not;
- two tasks that may run at the same time (neither depends on the other, directly or not)
  write no file in common: their branches would conflict;
- the tasks' estimates together fit the goal's budget, when it has one.

A dependency names an earlier task by its 1-based number or by its `key`.
"""

from collections.abc import Collection, Sequence
from typing import Final

from agentcom_common.contracts.plan import Plan, PlannedTask

MAX_TASKS: Final = 8


def name(index: int, task: PlannedTask) -> str:
    """`task 2 ("Add the CLI")`: how every message names a task (1-based, as the model does)."""
    title = task.title if len(task.title) <= 60 else task.title[:57] + "..."
    return f'task {index + 1} ("{title}")'


def dependencies(plan: Plan) -> list[list[int]]:
    """Each task's dependencies as 0-based indices, in order, each once; unresolvable ones are
    left out (`check` reports them). On a checked plan every index is lower than its task's."""
    keys = {t.key: i for i, t in enumerate(plan.tasks) if t.key is not None}
    resolved: list[list[int]] = []
    for task in plan.tasks:
        found: list[int] = []
        for ref in task.depends_on:
            index = keys.get(ref) if isinstance(ref, str) else ref - 1
            if index is not None and 0 <= index < len(plan.tasks) and index not in found:
                found.append(index)
        resolved.append(found)
    return resolved


def check(
    plan: Plan,
    tree: Collection[str],
    *,
    budget_tokens: int | None = None,
    budget_usd: float | None = None,
) -> list[str]:
    """Every rule `plan` breaks (module docstring), against the repo's files `tree`; [] = good."""
    errors = _count(plan) + _keys(plan) + _references(plan)
    deps = dependencies(plan)
    cycles = _cycles(deps)
    errors += [
        "tasks " + " -> ".join(str(i + 1) for i in (*cycle, cycle[0])) + " depend on each "
        "other in a cycle: none of them could ever start"
        for cycle in cycles
    ]
    ancestors = _ancestors(deps) if not cycles else [set[int]() for _ in plan.tasks]
    errors += _paths(plan, tree, ancestors)
    if not cycles:
        errors += _parallel_writes(plan, ancestors)
    return errors + _budget(plan, budget_tokens, budget_usd)


def _count(plan: Plan) -> list[str]:
    n = len(plan.tasks)
    if n == 0:
        return [f"the plan has no tasks: it needs 1 to {MAX_TASKS}"]
    if n > MAX_TASKS:
        return [
            f"the plan has {n} tasks: at most {MAX_TASKS} are allowed; merge related work "
            "into fewer, larger tasks"
        ]
    return []


def _keys(plan: Plan) -> list[str]:
    errors: list[str] = []
    first: dict[str, int] = {}
    for i, task in enumerate(plan.tasks):
        if task.key is None:
            continue
        if task.key.isdigit():
            errors.append(f"{name(i, task)} has the key '{task.key}': a key must not be a number")
        elif task.key in first:
            errors.append(
                f"{name(first[task.key], plan.tasks[first[task.key]])} and {name(i, task)} "
                f"share the key '{task.key}': keys must be unique"
            )
        else:
            first[task.key] = i
    return errors


def _references(plan: Plan) -> list[str]:
    keys = {t.key: i for i, t in enumerate(plan.tasks) if t.key is not None}
    n = len(plan.tasks)
    errors: list[str] = []
    for i, task in enumerate(plan.tasks):
        for ref in task.depends_on:
            index = keys.get(ref) if isinstance(ref, str) else ref - 1
            if index is None:
                errors.append(f"{name(i, task)} depends on '{ref}', which is no task's key")
            elif not 0 <= index < n:
                errors.append(
                    f"{name(i, task)} depends on task {ref}, but the tasks are numbered 1 to {n}"
                )
            elif index == i:
                errors.append(f"{name(i, task)} depends on itself")
            elif index > i:
                errors.append(
                    f"{name(i, task)} depends on {name(index, plan.tasks[index])}, which comes "
                    "later: a task may depend only on tasks listed before it"
                )
    return errors


def _cycles(deps: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Each elementary cycle found by a depth-first walk, once (as rotated to its lowest task)."""
    found: set[tuple[int, ...]] = set()
    state = [0] * len(deps)  # 0 unseen, 1 on the walk's path, 2 done
    path: list[int] = []

    def walk(node: int) -> None:
        state[node] = 1
        path.append(node)
        for nxt in deps[node]:
            if nxt == node:
                continue  # a self reference is reported as such, not as a cycle
            if state[nxt] == 1:
                cycle = path[path.index(nxt) :]
                low = cycle.index(min(cycle))
                found.add(tuple(cycle[low:] + cycle[:low]))
            elif state[nxt] == 0:
                walk(nxt)
        path.pop()
        state[node] = 2

    for start in range(len(deps)):
        if state[start] == 0:
            walk(start)
    return sorted(found)


def _ancestors(deps: Sequence[Sequence[int]]) -> list[set[int]]:
    """Every task each task waits for, directly or not (the graph has no cycle here)."""
    memo: dict[int, set[int]] = {}

    def of(node: int) -> set[int]:
        if node not in memo:
            memo[node] = set()
            for parent in deps[node]:
                if parent != node:
                    memo[node] |= {parent} | of(parent)
        return memo[node]

    return [of(i) for i in range(len(deps))]


def _bad_path(path: str) -> str | None:
    parts = path.split("/")
    if path.startswith("/") or "\\" in path:
        return "must be a relative path inside the repo, with / between folders"
    if ".." in parts:
        return "must not leave the repo (..)"
    if ".git" in parts:
        return "is inside .git, which no task may touch"
    return None


def _clean(path: str) -> str:
    while path.startswith("./"):
        path = path[2:]
    return path


def _paths(plan: Plan, tree: Collection[str], ancestors: Sequence[set[int]]) -> list[str]:
    folders = {f.rsplit("/", 1)[0] for f in tree if "/" in f}
    folders |= {p.rsplit("/", i)[0] for p in folders for i in range(1, p.count("/") + 1)}
    created = [{_clean(p) for p in t.new_files} for t in plan.tasks]
    errors: list[str] = []
    for i, task in enumerate(plan.tasks):
        for raw in task.writes():
            path = _clean(raw)
            if (why := _bad_path(path)) is not None:
                errors.append(f"{name(i, task)}: the file '{raw}' {why}")
                continue
            if raw not in task.files:
                continue  # a new file needs nothing to exist
            if path in tree or path.rstrip("/") in folders or path in created[i]:
                continue
            if any(path in created[a] for a in ancestors[i]):
                continue
            makers = [j for j, made in enumerate(created) if path in made and j != i]
            errors.append(
                f"{name(i, task)} changes {path}, which is not in the repo"
                + (
                    f"; {name(makers[0], plan.tasks[makers[0]])} creates it, but {name(i, task)} "
                    "does not depend on it"
                    if makers
                    else "; list it under new_files if the task creates it"
                )
            )
    return errors


def _overlaps(a: str, b: str) -> bool:
    """Same file, or one is a folder holding the other."""
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _parallel_writes(plan: Plan, ancestors: Sequence[set[int]]) -> list[str]:
    writes = [sorted({_clean(p) for p in t.writes()}) for t in plan.tasks]
    errors: list[str] = []
    for i in range(len(plan.tasks)):
        for j in range(i + 1, len(plan.tasks)):
            if i in ancestors[j] or j in ancestors[i]:
                continue  # one waits for the other: they never run at once
            for a in writes[i]:
                for b in writes[j]:
                    if _overlaps(a, b):
                        shared = a if a == b else f"{a} and {b} (one holds the other)"
                        errors.append(
                            f"{name(i, plan.tasks[i])} and {name(j, plan.tasks[j])} may run "
                            f"in parallel but both write {shared}: make one depend on the "
                            "other, or give the file to one of them"
                        )
    return errors


def _budget(plan: Plan, tokens: int | None, usd: float | None) -> list[str]:
    errors: list[str] = []
    want_tokens = sum(t.estimated_tokens for t in plan.tasks)
    want_usd = sum(t.estimated_usd for t in plan.tasks)
    if tokens is not None and want_tokens > tokens:
        errors.append(
            f"the tasks' estimates add up to {want_tokens:,} tokens, over the goal's budget of "
            f"{tokens:,}: plan fewer or smaller tasks"
        )
    if usd is not None and want_usd > usd:
        errors.append(
            f"the tasks' estimates add up to ${want_usd:.2f}, over the goal's budget of "
            f"${usd:.2f}: plan fewer or cheaper tasks"
        )
    return errors
