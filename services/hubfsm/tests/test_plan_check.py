"""`plan.check`: every rule a plan must pass, each broken one reported as a precise sentence."""

from typing import Any

from agentcom_common.contracts.plan import Plan
from agentcom_hubfsm.goals.plan import check, dependencies

TREE = frozenset({"README.md", "src/app.py", "src/db.py", "tests/test_app.py"})


def task(title: str, **fields: Any) -> dict[str, Any]:
    return {
        "title": title,
        "description": f"do {title}",
        "success_criteria": [f"{title} works"],
        "verification": ["pytest -q"],
        "estimated_tokens": 1000,
    } | fields


def plan(*tasks: dict[str, Any]) -> Plan:
    return Plan.model_validate({"tasks": list(tasks)})


def test_a_good_plan_has_no_errors() -> None:
    good = plan(
        task("Schema", key="schema", files=["src/db.py"], new_files=["src/models.py"]),
        task("API", depends_on=["schema"], files=["src/app.py", "src/models.py"]),
        task("Tests", depends_on=[2], new_files=["tests/test_api.py"], files=["tests/"]),
        task("Docs", files=["./README.md"]),
    )
    assert check(good, TREE) == []
    assert dependencies(good) == [[], [0], [1], []]


def test_a_cycle_is_reported_with_its_tasks() -> None:
    errors = check(plan(task("A", depends_on=[2]), task("B", depends_on=[1])), TREE)
    assert "tasks 1 -> 2 -> 1 depend on each other in a cycle: none of them could ever start" in (
        errors
    )
    # the edge that closes it is also a forward reference, reported as such
    assert (
        'task 1 ("A") depends on task 2 ("B"), which comes later: a task may depend only on '
        "tasks listed before it"
    ) in errors


def test_a_three_task_cycle_is_reported_once() -> None:
    errors = check(
        plan(task("A", depends_on=[3]), task("B", depends_on=[1]), task("C", depends_on=[2])),
        TREE,
    )
    assert [e for e in errors if "cycle" in e] == [
        "tasks 1 -> 3 -> 2 -> 1 depend on each other in a cycle: none of them could ever start"
    ]


def test_an_unknown_reference_is_named() -> None:
    errors = check(plan(task("A"), task("B", depends_on=["db", 7])), TREE)
    assert errors == [
        "task 2 (\"B\") depends on 'db', which is no task's key",
        'task 2 ("B") depends on task 7, but the tasks are numbered 1 to 2',
    ]


def test_a_forward_reference_is_refused() -> None:
    errors = check(plan(task("A", depends_on=["later"]), task("B", key="later")), TREE)
    assert errors == [
        'task 1 ("A") depends on task 2 ("B"), which comes later: a task may depend only on '
        "tasks listed before it"
    ]


def test_a_task_depending_on_itself_is_refused() -> None:
    assert check(plan(task("A", depends_on=[1])), TREE) == ['task 1 ("A") depends on itself']


def test_duplicate_and_numeric_keys_are_refused() -> None:
    errors = check(plan(task("A", key="x"), task("B", key="x"), task("C", key="3")), TREE)
    assert errors == [
        'task 1 ("A") and task 2 ("B") share the key \'x\': keys must be unique',
        "task 3 (\"C\") has the key '3': a key must not be a number",
    ]


def test_a_file_not_in_the_repo_is_refused_unless_declared_new() -> None:
    errors = check(plan(task("A", files=["src/ghost.py", "lib/"])), TREE)
    assert errors == [
        'task 1 ("A") changes src/ghost.py, which is not in the repo; list it under new_files '
        "if the task creates it",
        'task 1 ("A") changes lib/, which is not in the repo; list it under new_files if the '
        "task creates it",
    ]
    assert check(plan(task("A", new_files=["src/ghost.py"], files=["src/ghost.py"])), TREE) == []


def test_a_file_created_by_a_task_it_does_not_wait_for_is_refused() -> None:
    errors = check(
        plan(task("Make", new_files=["src/new.py"]), task("Use", files=["src/new.py"])), TREE
    )
    assert errors == [
        'task 2 ("Use") changes src/new.py, which is not in the repo; task 1 ("Make") creates '
        'it, but task 2 ("Use") does not depend on it',
        # and so the two may run at once, both writing it
        'task 1 ("Make") and task 2 ("Use") may run in parallel but both write src/new.py: '
        "make one depend on the other, or give the file to one of them",
    ]


def test_a_file_created_two_dependencies_up_is_there() -> None:
    chain = plan(
        task("Make", new_files=["src/new.py"]),
        task("Middle", depends_on=[1], files=["src/app.py"]),
        task("Use", depends_on=[2], files=["src/new.py"]),
    )
    assert check(chain, TREE) == []


def test_paths_leaving_the_repo_or_inside_git_are_refused() -> None:
    errors = check(plan(task("A", files=["/etc/passwd"], new_files=["../x", ".git/config"])), TREE)
    assert errors == [
        "task 1 (\"A\"): the file '/etc/passwd' must be a relative path inside the repo, with / "
        "between folders",
        "task 1 (\"A\"): the file '../x' must not leave the repo (..)",
        "task 1 (\"A\"): the file '.git/config' is inside .git, which no task may touch",
    ]


def test_parallel_tasks_writing_one_file_are_refused_naming_both() -> None:
    errors = check(
        plan(
            task("Base"),
            task("API", depends_on=[1], files=["src/app.py"]),
            task("CLI", depends_on=[1], files=["src/app.py"]),
        ),
        TREE,
    )
    assert errors == [
        'task 2 ("API") and task 3 ("CLI") may run in parallel but both write src/app.py: make '
        "one depend on the other, or give the file to one of them"
    ]


def test_a_folder_and_a_file_inside_it_overlap() -> None:
    errors = check(plan(task("A", files=["src/"]), task("B", new_files=["src/new.py"])), TREE)
    assert errors == [
        'task 1 ("A") and task 2 ("B") may run in parallel but both write src/ and src/new.py '
        "(one holds the other): make one depend on the other, or give the file to one of them"
    ]


def test_tasks_ordered_through_a_third_may_write_the_same_file() -> None:
    chain = plan(
        task("A", files=["src/app.py"]),
        task("B", depends_on=[1]),
        task("C", depends_on=[2], files=["src/app.py"]),
    )
    assert check(chain, TREE) == []


def test_forty_tasks_are_refused() -> None:
    errors = check(plan(*(task(f"T{i}") for i in range(40))), TREE)
    assert errors == [
        "the plan has 40 tasks: at most 8 are allowed; merge related work into fewer, larger tasks"
    ]


def test_no_tasks_is_refused() -> None:
    assert check(plan(), TREE) == ["the plan has no tasks: it needs 1 to 8"]


def test_eight_tasks_are_allowed() -> None:
    assert check(plan(*(task(f"T{i}") for i in range(8))), TREE) == []


def test_estimates_over_the_budget_are_refused() -> None:
    costly = plan(
        task("A", estimated_tokens=60_000, estimated_usd=1.5),
        task("B", estimated_tokens=50_000, estimated_usd=1.0),
    )
    assert check(costly, TREE, budget_tokens=100_000, budget_usd=2.0) == [
        "the tasks' estimates add up to 110,000 tokens, over the goal's budget of 100,000: "
        "plan fewer or smaller tasks",
        "the tasks' estimates add up to $2.50, over the goal's budget of $2.00: plan fewer or "
        "cheaper tasks",
    ]
    assert check(costly, TREE, budget_tokens=110_000, budget_usd=2.5) == []
    assert check(costly, TREE) == []  # no budget, no limit


def test_every_broken_rule_is_reported_at_once() -> None:
    errors = check(
        plan(
            task("A", files=["src/ghost.py"], estimated_tokens=500),
            task("B", depends_on=["nope"], files=["src/app.py"]),
            task("C", files=["src/app.py"]),
        ),
        TREE,
        budget_tokens=10,
    )
    assert len(errors) == 4, errors
    assert [e.split(" ")[0] for e in errors] == ["task", "task", "task", "the"]
