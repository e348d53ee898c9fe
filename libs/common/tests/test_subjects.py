import pytest

from agentcom_common import subjects
from agentcom_common.contracts import EVENTS


@pytest.mark.parametrize("bad", ["a.b", "*", ">", "", "x" * 65, "sp ace", "a>b"])
def test_ids_that_would_widen_a_subject_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"A-Za-z0-9_-"):
        subjects.agent_inbox(bad)


def test_agent_subjects_fall_inside_their_streams() -> None:
    assert subjects.agent_inbox("gcu-sleeper") == "agentcom.agent.gcu-sleeper.inbox"
    assert subjects.agent_report("a1") == "agentcom.agent.a1.report"
    assert subjects.agent_all("a1") == "agentcom.agent.a1.>"
    assert subjects.event("task", "completed") == "agentcom.evt.task.completed"


def test_event_names_are_single_lowercase_tokens() -> None:
    with pytest.raises(ValueError, match="lowercase"):
        subjects.event("task", "done.now")


def test_every_event_subject_has_its_contract() -> None:
    named = {
        value
        for value in vars(subjects).values()
        if isinstance(value, str) and value.startswith("agentcom.evt.") and "*" not in value
    } - {subjects.EVENTS_ALL, subjects.TASK_EVENTS, subjects.AGENT_EVENTS}

    assert named == set(EVENTS)
