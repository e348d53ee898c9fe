"""Which branch a goal's dependent task starts from (the rule in docs/hub.md)."""

from agentcom_hubfsm.goals.driver import base_branch, work_branch

PUSHED_A = {"branch": "agentcom/a1/task-a-code", "base": "main", "pushed": True}
PUSHED_B = {"branch": "agentcom/a2/task-b-docs", "base": "main", "pushed": True}
NOTHING_PUSHED = {"branch": "agentcom/a1/task-c-noop", "base": "release", "pushed": False}


def test_a_dependency_that_pushed_gives_its_branch_one_that_did_not_its_base() -> None:
    assert work_branch(PUSHED_A) == "agentcom/a1/task-a-code"
    assert work_branch(NOTHING_PUSHED) == "release"
    assert work_branch(None) is None
    assert work_branch({"summary": "no repo"}) is None


def test_several_dependencies_start_from_the_first_and_name_the_others_to_merge() -> None:
    assert base_branch([PUSHED_A]) == ("agentcom/a1/task-a-code", [])
    assert base_branch([PUSHED_A, PUSHED_B, PUSHED_A]) == (
        "agentcom/a1/task-a-code",
        ["agentcom/a2/task-b-docs"],
    )
    assert base_branch([None, {"summary": "no repo"}]) == (None, [])
