"""`planparse.parse`: a model's reply as a `Plan`, whatever wrapping the model chose."""

import json
from typing import Any

import pytest

from agentcom_common import safexml
from agentcom_common.contracts.documents import PlanDocument
from agentcom_common.contracts.plan import Plan
from agentcom_common.contracts.task import Tier
from agentcom_hubfsm.goals.planparse import NO_PLAN, UnreadablePlanError, parse
from agentcom_hubfsm.goals.planprompt import XML_RULES

TASK: dict[str, Any] = {
    "key": "api",
    "title": "Add the API",
    "description": "A /health route",
    "success_criteria": ["GET /health answers 200"],
    "verification": ["pytest -q tests/test_api.py"],
    "depends_on": [],
    "files": ["src/app.py"],
    "new_files": ["tests/test_api.py"],
    "tier": "standard",
    "estimated_tokens": 30000,
    "estimated_usd": 0.25,
}
PLAN = {"summary": "one task", "tasks": [TASK]}


def errors_of(text: str) -> list[str]:
    with pytest.raises(UnreadablePlanError) as caught:
        parse(text)
    return caught.value.errors


def test_native_json_is_read() -> None:
    plan = parse(json.dumps(PLAN))
    assert plan.summary == "one task"
    [task] = plan.tasks
    assert (task.key, task.title, task.tier, task.estimated_usd) == (
        "api",
        "Add the API",
        Tier.STANDARD,
        0.25,
    )
    assert task.verification == ["pytest -q tests/test_api.py"]


def test_json_in_a_fenced_block_inside_prose_is_read() -> None:
    reply = f"Here is the plan you asked for.\n\n```json\n{json.dumps(PLAN, indent=2)}\n```\n\nGood luck!"
    assert parse(reply).tasks[0].title == "Add the API"


def test_the_first_balanced_object_in_prose_is_read() -> None:
    # braces inside strings ({name}) must not end the object early
    task = TASK | {"description": 'print "{name}" and a } brace'}
    reply = f"Sure! The plan: {json.dumps({'tasks': [task]})} -- that should {{do}} it."
    assert parse(reply).tasks[0].description == 'print "{name}" and a } brace'


def test_think_blocks_are_dropped_before_reading() -> None:
    reply = "<think>maybe {not this} or <plan>this</plan></think>\n" + json.dumps(PLAN)
    assert parse(reply).tasks[0].key == "api"


def test_a_bare_list_and_a_plan_wrapper_are_read() -> None:
    assert parse(json.dumps([TASK])).tasks[0].key == "api"
    assert parse(json.dumps({"plan": PLAN})).tasks[0].key == "api"


def test_a_plain_xml_reply_is_read() -> None:
    reply = """I propose:
<plan>
  <summary>two tasks</summary>
  <task key="schema">
    <title>Add the schema</title>
    <description>Tables &amp; indexes</description>
    <success-criteria><criterion>tables exist</criterion><criterion>indexes exist</criterion></success-criteria>
    <verification><command><![CDATA[test -f src/db.py && grep -q "CREATE" src/db.py]]></command></verification>
    <files>src/db.py</files>
    <tier>trivial</tier>
    <estimated_tokens>1000</estimated_tokens>
  </task>
  <task>
    <title>Use it</title>
    <description>From the API</description>
    <success_criteria>the API reads the table
the API writes the table</success_criteria>
    <verification>pytest -q</verification>
    <depends-on>schema, 1</depends-on>
    <files>src/app.py, src/db.py</files>
    <estimated_tokens>2000</estimated_tokens>
    <estimated_usd>0.1</estimated_usd>
  </task>
</plan>"""
    plan = parse(reply)
    first, second = plan.tasks
    assert plan.summary == "two tasks"
    assert first.key == "schema"
    assert first.description == "Tables & indexes"
    assert first.success_criteria == ["tables exist", "indexes exist"]
    assert first.verification == ['test -f src/db.py && grep -q "CREATE" src/db.py']
    assert first.tier is Tier.TRIVIAL
    assert second.success_criteria == ["the API reads the table", "the API writes the table"]
    assert second.depends_on == ["schema", 1]
    assert second.files == ["src/app.py", "src/db.py"]
    assert second.tier is Tier.STANDARD  # left out: standard


def test_xml_in_a_fenced_block_is_read() -> None:
    reply = "```xml\n<plan><task><title>T</title><description>D</description><success_criteria>ok</success_criteria><verification>true</verification><estimated_tokens>1</estimated_tokens></task></plan>\n```"
    assert parse(reply).tasks[0].title == "T"


def test_xml_entities_are_refused() -> None:
    bomb = (
        '<!DOCTYPE plan [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
        "<plan><task><title>&b;</title></task></plan>"
    )
    [error] = errors_of("```xml\n" + bomb + "\n```")
    assert error.startswith("the <plan> XML uses DTD"), error


def test_broken_xml_says_where() -> None:
    [error] = errors_of("<plan><task><title>T</task></plan>")
    assert error.startswith("the <plan> XML is not well-formed: mismatched tag: line 1"), error


def test_a_prose_only_reply_is_no_plan() -> None:
    assert errors_of("I think the goal is clear; you should add an API and tests.") == [NO_PLAN]
    assert NO_PLAN.startswith("no plan found")
    assert errors_of("") == [NO_PLAN]


def test_broken_json_says_where() -> None:
    [error] = errors_of('{"tasks": [{"title": "A",}]}')
    assert error.startswith("the reply is not valid JSON: Expecting property name"), error
    assert "line 1 column" in error
    [fenced] = errors_of('Plan:\n```json\n{"tasks": [\n```')
    assert fenced.startswith("the ```json block is not valid JSON: "), fenced


def test_schema_errors_name_the_task_and_field() -> None:
    bad_tier = TASK | {"tier": "medium"}
    missing = {k: v for k, v in TASK.items() if k not in ("title", "verification")}
    errors = errors_of(json.dumps({"tasks": [TASK, bad_tier, missing]}))
    assert errors == [
        "task 2: tier: Input should be 'trivial', 'standard' or 'complex' (got \"medium\")",
        "task 3: title: Field required",
        "task 3: verification: Field required",
    ]


def test_an_object_without_tasks_says_so() -> None:
    assert errors_of('{"steps": []}') == ["tasks: Field required"]


def test_empty_lists_and_blank_titles_are_refused() -> None:
    errors = errors_of(json.dumps({"tasks": [TASK | {"title": "  ", "success_criteria": []}]}))
    assert errors == [
        'task 1: title: String should have at least 1 character (got "  ")',
        "task 1: success_criteria: List should have at least 1 item after validation, not 0 "
        "(got [])",
    ]


def test_field_names_are_read_loosely() -> None:
    loose = {
        "Title": "A",
        "description": "D",
        "acceptance-criteria": ["ok"],
        "verification_steps": ["make test"],
        "dependencies": "1, 2",
        "complexity": "complex",
        "tokens": 5,
    }
    task = parse(json.dumps({"tasks": [loose]})).tasks[0]
    assert task.success_criteria == ["ok"]
    assert task.verification == ["make test"]
    assert task.depends_on == [1, 2]
    assert task.tier is Tier.COMPLEX
    assert task.estimated_tokens == 5


def test_the_xml_prompts_document_is_read_into_the_json_paths_plan() -> None:
    """The reply the XML prompt asks for (`planprompt.XML_EXAMPLE`'s shape) is the same `Plan`
    the JSON reply of the same content is."""
    assert "Answer with one <plan> XML document" in XML_RULES
    assert "<estimated_tokens>60000</estimated_tokens>" in XML_RULES
    as_json = parse(json.dumps(PLAN))
    document = safexml.write(PlanDocument.of(Plan.model_validate(PLAN)))
    assert parse(f"Here is the plan:\n```xml\n{document}\n```") == as_json
    assert parse(document) == as_json


def test_an_oversized_or_deep_xml_plan_is_refused() -> None:
    [big] = errors_of("<plan><summary>" + "x" * 1_000_001 + "</summary></plan>")
    assert big.startswith("the <plan> XML is 1000033 bytes"), big
    [deep] = errors_of("<plan>" + "<a>" * 100 + "</a>" * 100 + "</plan>")
    assert deep.startswith("the <plan> XML nests"), deep
