"""The README, docs and CI script stay true to the code."""

import re
from pathlib import Path

from agentcom_common.contracts.task import SubmitTask
from agentcom_common.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[1]


def test_readme_opens_with_exactly_the_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```sh\n(.*?)```", readme, re.DOTALL)
    assert first_block is not None
    lines = first_block[1].strip().splitlines()

    assert len(lines) == 2
    assert "agentcom up" in lines[0]
    assert lines[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_every_setting_is_documented() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    missing = [
        name
        for name in CommonSettings.model_fields
        if f"AGENTCOM_{name.upper()}" not in page and name != "otel_endpoint"
    ]

    assert missing == []
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in page


def test_docs_links_in_the_readme_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)]+)\)", readme)

    assert links
    assert [link for link in links if not (ROOT / link).exists()] == []


def test_the_submit_example_in_the_queue_docs_is_a_valid_task() -> None:
    text = (ROOT / "docs" / "queue.md").read_text()
    body = text.split("## Interfaces", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    task = SubmitTask.model_validate_json(body)
    assert task.metadata["command"]
    assert {step.type for step in task.verification_steps} == {
        "test_passes",
        "file_exists",
        "command_succeeds",
        "git_clean",
    }
