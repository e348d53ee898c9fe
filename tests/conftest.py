"""Cross-service fixtures: real sidecar processes, a local bare git remote, a fake GitHub,
and the queue and scheduler in this process (helpers in tests/servers/real_sidecars.py)."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, running
from agentcom_queue.app import create_app as queue_app
from agentcom_scheduler.app import create_app as scheduler_app
from agentcom_scheduler.settings import SchedulerSettings
from fake_github import FakeGitHub, serve as serve_github
from real_sidecars import SCHEDULER_TIMERS, Sidecars, git, make_origin


@pytest.fixture
def sidecars(tmp_path: Path) -> Iterator[Sidecars]:
    made = Sidecars(tmp_path / "agents")
    try:
        yield made
    finally:
        made.stop_all()


class Repos:
    """Real git for tests: `origin(tmp, files)` makes a bare remote, `git(...)` runs git."""

    git = staticmethod(git)
    origin = staticmethod(make_origin)


@pytest.fixture
def repos() -> Repos:
    return Repos()


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """A fake GitHub API on a real socket (tests/servers/fake_github.py)."""
    with serve_github() as fake:
        yield fake


# the scheduler's timers for these tests: a silent agent's task goes back after 3 s, which
# the tests of hand-backs wait for (a module that must not see one overrides `hub_timers`)
HUB_TIMERS: dict[str, Any] = SCHEDULER_TIMERS | {"scheduler_missed_heartbeats": 10}


@pytest.fixture
def hub_timers() -> dict[str, Any]:
    """What a test module changes of HUB_TIMERS (override this fixture in the module)."""
    return {}


@pytest.fixture
async def hub(
    settings: CommonSettings,
    nats_server: NatsServer,
    admin_token: str,
    hub_timers: dict[str, Any],
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """The queue and the scheduler in this process (the scheduler answers the agents' NATS
    logins), as admin clients: (queue, scheduler)."""
    fast = SchedulerSettings.model_validate(
        settings.model_dump()
        | HUB_TIMERS
        | hub_timers
        | {"scheduler_nats_issuer_seed": nats_server.auth.issuer_seed}
    )
    async with (
        running(queue_app(settings), "http://queue") as queue,
        running(scheduler_app(fast), "http://scheduler") as scheduler,
    ):
        for client in (queue, scheduler):
            client.headers["Authorization"] = f"Bearer {admin_token}"
        yield queue, scheduler
