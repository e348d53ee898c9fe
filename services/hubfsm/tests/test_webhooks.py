"""GitHub webhooks at the hub: refusals recorded and answered with a clear 4xx, a valid
delivery acted on once, and what each event does (goals from issues, the CI signal, PR state)."""

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common.contracts.alert import Severity
from agentcom_common.contracts.health import IssueCategory
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import running
from agentcom_hubfsm.app import create_app
from agentcom_hubfsm.health import reports
from agentcom_hubfsm.settings import HubSettings
from fake_github import FakeGitHub, repository, serve, signed

Json = dict[str, Any]
SECRET = "It's a Secret to Everybody"
REPO = repository("acme/widgets", "https://github.example/acme/widgets.git")


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with serve() as fake:
        yield fake


@pytest.fixture
async def hub(
    settings: CommonSettings, admin_token: str, github: FakeGitHub
) -> AsyncIterator[httpx.AsyncClient]:
    fast = HubSettings.model_validate(
        settings.model_dump()
        | {
            "hub_github_webhook_secret": SECRET,
            "hub_github_webhook_secrets": {"acme/own": "another secret"},
            "hub_github_webhook_max_body": 4096,
            "hub_github_api_url": github.url,
            "hub_github_log_tail": 2,
        }
    )
    async with running(create_app(fast), "http://hubfsm") as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


async def send(
    hub: httpx.AsyncClient,
    event: str,
    payload: Json,
    *,
    delivery: str | None = None,
    secret: str = SECRET,
    drop: tuple[str, ...] = (),
) -> httpx.Response:
    body, headers = signed(secret, event, payload, delivery or str(uuid.uuid4()))
    for name in drop:
        headers.pop(name)
    return await hub.post("/api/webhooks/github", content=body, headers=headers)


async def deliveries(hub: httpx.AsyncClient) -> list[Json]:
    listed = await hub.get("/api/webhooks/deliveries")
    assert listed.status_code == 200, listed.text
    return listed.json()["deliveries"]


def labelled(number: int = 7, label: str = "agentcom") -> Json:
    return {
        "action": "labeled",
        "label": {"name": label},
        "issue": {
            "number": number,
            "title": "Widgets need a README",
            "body": "Write one.",
            "html_url": f"https://github.example/acme/widgets/issues/{number}",
        },
        "repository": REPO,
    }


async def test_a_labelled_issue_becomes_one_goal_and_its_replay_is_refused(
    hub: httpx.AsyncClient,
) -> None:
    first = await send(hub, "issues", labelled(), delivery="d-1")
    assert first.status_code == 200, first.text
    assert first.json()["outcome"] == "acted"
    again = await send(hub, "issues", labelled(), delivery="d-1")
    assert again.status_code == 409, again.text
    assert again.json()["error"] == "delivery_replayed"

    goals = (await hub.get("/api/goals")).json()["goals"]
    assert len(goals) == 1
    goal = goals[0]
    assert (goal["source"], goal["link"]) == (
        "github",
        "https://github.example/acme/widgets/issues/7",
    )
    assert goal["repo"] == "https://github.example/acme/widgets.git"
    assert goal["title"] == "Widgets need a README"
    listed = await deliveries(hub)
    assert [(d["delivery"], d["outcome"], d["status"]) for d in listed] == [
        ("d-1", "refused", 409),
        ("d-1", "acted", 200),
    ]
    assert listed[1]["done"] == [f"made goal {goal['id']} from issue #7"]
    assert listed[1]["event"] == "issues"
    assert listed[1]["repo"] == "acme/widgets"


@pytest.mark.parametrize(
    ("how", "status", "code"),
    [
        ("wrong secret", 403, "signature_mismatch"),
        ("no signature", 401, "signature_missing"),
        ("too large", 413, "webhook_too_large"),
        ("no delivery id", 422, "invalid_field"),
        ("repo with its own secret", 403, "signature_mismatch"),
    ],
)
async def test_a_bad_delivery_is_refused_recorded_and_not_acted_on(
    hub: httpx.AsyncClient, how: str, status: int, code: str
) -> None:
    payload = labelled()
    if how == "wrong secret":
        reply = await send(hub, "issues", payload, secret="guessed")
    elif how == "no signature":
        reply = await send(hub, "issues", payload, drop=("X-Hub-Signature-256",))
    elif how == "too large":
        payload["issue"]["body"] = "x" * 5000
        reply = await send(hub, "issues", payload)
    elif how == "no delivery id":
        reply = await send(hub, "issues", payload, drop=("X-GitHub-Delivery",))
    else:  # signed with the shared secret, but this repo has its own
        payload["repository"] = repository("acme/own", "https://github.example/acme/own.git")
        reply = await send(hub, "issues", payload)

    assert reply.status_code == status, reply.text
    assert reply.json()["error"] == code
    assert SECRET not in reply.text
    assert (await hub.get("/api/goals")).json()["goals"] == []
    (recorded,) = await deliveries(hub)
    assert (recorded["outcome"], recorded["status"]) == ("refused", status)
    assert recorded["reason"].startswith(code)


async def test_a_refused_delivery_does_not_use_up_its_id(hub: httpx.AsyncClient) -> None:
    bad = await send(hub, "issues", labelled(), delivery="d-2", secret="guessed")
    good = await send(hub, "issues", labelled(), delivery="d-2")
    assert (bad.status_code, good.status_code) == (403, 200), good.text
    assert len((await hub.get("/api/goals")).json()["goals"]) == 1


async def test_other_labels_and_events_are_recorded_and_ignored(hub: httpx.AsyncClient) -> None:
    other = await send(hub, "issues", labelled(label="bug"))
    star = await send(hub, "star", {"action": "created", "repository": REPO})
    assert [r.json()["outcome"] for r in (other, star)] == ["ignored", "ignored"]
    assert (await hub.get("/api/goals")).json()["goals"] == []
    reasons = [d["reason"] for d in await deliveries(hub)]
    assert reasons == [
        "the hub does not act on star events",
        "issues labeled (bug): only the label 'agentcom' makes a goal",
    ]


def failed_check(branch: str, sha: str = "a" * 40, check_id: int = 11) -> Json:
    return {
        "action": "completed",
        "check_run": {
            "id": check_id,
            "name": "tests",
            "conclusion": "failure",
            "head_sha": sha,
            "html_url": f"https://github.example/acme/widgets/runs/{check_id}",
            "check_suite": {"head_branch": branch},
        },
        "repository": REPO,
    }


async def test_ci_failing_on_the_default_branch_is_recorded_and_published_once(
    hub: httpx.AsyncClient, github: FakeGitHub, nc: Client, engine: AsyncEngine
) -> None:
    github.logs[11] = "collecting\nFAILED test_widgets.py::test_spin\n1 failed\n"
    sub = await nc.subscribe("agentcom.evt.github.ci_failed")  # pyright: ignore[reportUnknownMemberType]
    first = await send(hub, "check_run", failed_check("main"))
    assert first.json()["outcome"] == "acted", first.text
    event = json.loads((await sub.next_msg(timeout=10)).data)
    assert (event["repo"], event["branch"], event["check"]) == ("acme/widgets", "main", "tests")
    # the last two lines (hub_github_log_tail) of the job's log, read from the API
    assert event["log_tail"].endswith("FAILED test_widgets.py::test_spin\n1 failed")
    assert "collecting" not in event["log_tail"]

    async with engine.connect() as conn:
        (issue,) = await reports.active(conn)
    assert (issue.category, issue.severity) == (IssueCategory.CI_FAILING, Severity.CRITICAL)
    assert issue.evidence["log_tail"] == event["log_tail"]
    # as healing's diagnostic task reads it: the repo by its URL, the failing job
    assert (issue.evidence["repo"], issue.evidence["github"], issue.evidence["job"]) == (
        "https://github.example/acme/widgets.git",
        "acme/widgets",
        "tests",
    )

    again = await send(hub, "check_run", failed_check("main"))  # a new delivery, same failure
    assert again.json()["outcome"] == "ignored"
    with pytest.raises(TimeoutError):
        await sub.next_msg(timeout=0.3)  # the repeat published nothing

    passed = failed_check("main") | {
        "check_run": failed_check("main")["check_run"] | {"conclusion": "success"}
    }
    cleared = await send(hub, "check_run", passed)
    assert cleared.json()["done"] == ["cleared the ci_failing issue of tests on main"]
    async with engine.connect() as conn:
        assert await reports.active(conn) == []


async def test_a_failed_check_on_a_branch_not_ours_is_ignored(hub: httpx.AsyncClient) -> None:
    reply = await send(hub, "check_run", failed_check("feature/x"))
    assert reply.json()["outcome"] == "ignored"
    assert "not one of our goals' branches" in reply.json()["reason"]


async def test_a_push_to_the_default_branch_wakes_the_brain_and_others_are_ignored(
    hub: httpx.AsyncClient,
) -> None:
    push: Json = {"ref": "refs/heads/main", "after": "b" * 40, "repository": REPO}
    reply = await send(hub, "push", push)
    assert reply.json()["outcome"] == "acted", reply.text
    assert reply.json()["done"] == [
        "no goal names this repo: no mirror to refresh",
        "woke the brain",
    ]
    side = await send(hub, "push", push | {"ref": "refs/heads/feature"})
    assert side.json()["outcome"] == "ignored"
