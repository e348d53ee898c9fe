"""The brain's pass on a real database, driven one step at a time: a paused hub does not move,
entry work runs beside the pass and ends with its stay, a new brain resumes it, and so does
the same brain leading again."""

import asyncio
import contextlib
from datetime import timedelta

from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common.contracts.hub import GoalRef, HubState, SubmitGoal
from agentcom_hubfsm.brain import loop, ops
from agentcom_hubfsm.goals import ops as goal_ops
from agentcom_hubfsm.tables import outbox_table

H = HubState
GOAL = SubmitGoal(title="t", success_criteria=["c"], repo="https://example.invalid/r.git")


def brain(engine: AsyncEngine, nc: Client, **entry: loop.Work) -> loop.Brain:
    return loop.Brain(
        engine,
        nc,
        instance="test",
        wake=asyncio.Event(),
        tick=timedelta(hours=1),  # passes run only when the test calls step()
        watchdog=timedelta(hours=1),
        entry={H(state): (f"{state}-work", work) for state, work in entry.items()},
    )


def hub(engine: AsyncEngine) -> ops.Hub:
    return ops.Hub(engine, asyncio.Event(), timedelta(hours=1))


async def test_a_paused_hub_does_not_move(engine: AsyncEngine, nc: Client) -> None:
    b, h = brain(engine, nc), hub(engine)
    await ops.pause(h, "", "test")
    goals = goal_ops.Goals(engine, outbox_table, asyncio.Event())
    goal, _ = await goal_ops.submit(goals, GOAL, "test")
    for _ in range(3):
        assert (await b.step()).state is H.RESTING
    assert [m.to_state for m in (await ops.history(h, None, 10)).moves] == [H.RESTING]

    await ops.resume(h, "", "test")
    assert (await b.step()).state is H.EXECUTING
    await ops.pause(h, "", "test")
    await goal_ops.cancel(goals, GoalRef(goal_id=goal.id), "test")
    assert (await b.step()).state is H.EXECUTING  # no goals open, but paused: it stays
    await ops.resume(h, "", "test")
    assert (await b.step()).state is H.RESTING


async def test_entry_work_runs_beside_the_pass_and_ends_with_its_stay(
    engine: AsyncEngine, nc: Client
) -> None:
    starts: asyncio.Queue[None] = asyncio.Queue()
    ended = asyncio.Event()

    async def started() -> None:
        await asyncio.wait_for(starts.get(), timeout=5)

    async def work() -> None:
        starts.put_nowait(None)
        try:
            await asyncio.Event().wait()  # until the hub leaves the state
        finally:
            ended.set()

    b, h = brain(engine, nc, executing=work), hub(engine)
    await goal_ops.submit(goal_ops.Goals(engine, outbox_table, asyncio.Event()), GOAL, "test")
    stay = await b.step()  # returns while the work runs on: it is not inside the pass
    assert stay.state is H.EXECUTING
    await started()
    assert (await ops.state(h)).work == "executing-work"
    assert await b.step() == stay  # the same stay: not started twice
    assert starts.empty()

    await ops.stop(h, "", "test")
    assert (await b.step()).state is H.RESTING
    await asyncio.wait_for(ended.wait(), timeout=5)
    assert (await ops.state(h)).work is None

    await ops.start(h, "", "test")
    await b.step()
    await started()  # a new stay, new work

    ended.clear()
    successor = brain(engine, nc, executing=work)  # a restart or a takeover
    await b.stop_work()
    await asyncio.wait_for(ended.wait(), timeout=5)
    await successor.step()
    await started()  # it resumes the stay's work
    assert (await ops.state(h)).work == "executing-work"
    await successor.stop_work()


async def test_a_brain_that_leads_again_starts_its_stays_work_again(
    engine: AsyncEngine, nc: Client
) -> None:
    """A replica loses the lock (its work is cancelled) and takes it back, the hub still in the
    same stay: the work starts again (it was taken as still running, and a cycle never ended)."""
    starts: asyncio.Queue[None] = asyncio.Queue()

    async def work() -> None:
        starts.put_nowait(None)
        await asyncio.Event().wait()

    b = brain(engine, nc, executing=work)
    await goal_ops.submit(goal_ops.Goals(engine, outbox_table, asyncio.Event()), GOAL, "test")
    for _ in range(2):  # leads, loses the lead, leads again
        leading = asyncio.create_task(b.lead())
        async with asyncio.timeout(5):
            await starts.get()
        leading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leading
    assert (await ops.state(hub(engine))).state is H.EXECUTING  # one stay throughout
