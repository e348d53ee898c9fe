"""The sidecar process: inbox in, work done, reports out, and a journal that survives kill -9.

Order of a start: settle what the journal says was interrupted (a task that was running is
stopped and failed cleanly, after a `recovering` report), connect, take what waits in the inbox
into the journal, say `hello` naming the task still held, then serve: the inbox loop, the
courier, heartbeats and the status file run side by side, and the work runs as its own asyncio
task so cancel, restart and heartbeats are never blocked by it.

Size: one job, the process's lifecycle (start order, loops, stop); the steps of a task are in
`work`, the journal in its own module.
"""

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import time
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal, TextIO

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from pydantic import TypeAdapter, ValidationError

from agentcom_common import cancelling, subjects
from agentcom_common.contracts.agent import (
    Assign,
    Cancel,
    Cancelled,
    Hello,
    Recovering,
    Restart,
    Restarting,
    Start,
)
from agentcom_common.contracts.base import Contract
from agentcom_common.contracts.task import TaskView
from agentcom_common.errors import ConflictError
from agentcom_sidecar import blockers, console, host, link, processes
from agentcom_sidecar.config import SidecarConfig
from agentcom_sidecar.executors import registry
from agentcom_sidecar.journal import Journal, TaskRow, dump, unreadable_task
from agentcom_sidecar.namespaces import Isolation
from agentcom_sidecar.work import Work, safe_id

log = logging.getLogger(__name__)
VERSION = version("agentcom-sidecar")
_INBOX: TypeAdapter[Assign | Start | Cancel | Restart] = TypeAdapter(
    Assign | Start | Cancel | Restart
)
Key = tuple[str, int]


class _Refusable(Contract):
    """An `Assign` whose task is not a `TaskView` but names its task and generation: it is
    journaled and rejected like any refused assignment, so the hub hears why at once and the
    message is never redelivered."""

    kind: Literal["assign"]
    task: dict[str, object]
    generation: int
    deadline: datetime | None = None


class Sidecar:
    def __init__(self, config: SidecarConfig) -> None:
        self.config = config
        self._lock = _lock(config.state)  # before the journal: one process per state dir
        try:
            self.journal = Journal(config.journal_path)
        except BaseException:
            self._lock.close()
            raise
        self.courier = link.Courier(self.journal, config)
        self.work_of = Work(config, self.journal, self.courier)
        self.work: asyncio.Task[None] | None = None
        self.work_key: Key | None = None
        self.recovered = False
        self.restart_msg: Msg | None = None
        self.stopping = asyncio.Event()
        self.nc: Client | None = None
        self.serving = False
        self.exit_code = 0
        self.blocked: str | None = None  # why it cannot take work, as its heartbeats say
        self._hello_due = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.isolation: Isolation | None = None
        """What holds for the agent loop's commands (`registry.isolation`), once probed."""

    # ---- start, serve, stop -------------------------------------------------------------

    async def run(self) -> int:
        """Serve until a `restart` (exit 0 for the supervisor to start us again) or a stop."""
        try:
            return await self._serve()
        finally:
            self._lock.close()  # closing the file releases the lock

    async def _serve(self) -> int:
        self.settle_interrupted()
        nc = self.nc = await self._connect_or_stop()
        if nc is None:
            self.journal.close()
            return 0
        try:
            js = nc.jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
            inbox = await self._bind(js)
            await self._drain(inbox)
            await self._hello(js)
            self._write_status()
            console.say(
                f"connected as {self.config.agent_id} to {self.config.nats_url}, waiting for work"
            )
            for coro in (
                self.courier.run(js),
                self._serve_inbox(inbox),
                self._heartbeats(js),
                self._resume(),
            ):
                self._spawn(coro)
            await self.stopping.wait()
        finally:
            # again while one runs on: a cancel can be swallowed (`cancelling`)
            stuck = await cancelling.cancel_and_wait(list(self._tasks), grace=30)
            for task in stuck:
                log.error("sidecar.loop_stuck", extra={"loop": repr(task.get_coro())[:200]})
            with contextlib.suppress(NatsError, OSError, TimeoutError):
                async with asyncio.timeout(5):
                    await nc.close()  # not drain(): a pull subscription's drain waits its timeout
            self.nc = None
            self._write_status()
            self.journal.close()
        return self.exit_code

    async def _connect_or_stop(self) -> Client | None:
        """Connect (retrying forever), unless asked to stop first."""
        connecting = asyncio.create_task(link.connect(self.config, self._on_reconnect))
        stop = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({connecting, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if connecting.done():
            return connecting.result()
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connecting
        return None

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("sidecar.loop_crashed", extra={"error": repr(exc)[:300]})
            self.exit_code = 1
            self.stopping.set()  # a broken loop ends the process; the supervisor restarts it

    async def _on_reconnect(self) -> None:
        log.info("nats.reconnected")
        self._hello_due.set()

    async def _bind(self, js: JetStreamContext) -> JetStreamContext.PullSubscription:
        while True:
            try:
                return await link.bind_inbox(js, self.config)
            except (NatsError, OSError, TimeoutError) as exc:
                log.warning("inbox.bind_failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(self.config.reconnect_wait)

    # ---- crash recovery -----------------------------------------------------------------

    def settle_interrupted(self) -> None:
        """A task that was accepted or running when the process died is stopped and failed.

        Its process group is killed if it survived; `recovering` then `failed` are journaled
        together, so the hub hears the true end of that attempt (and may retry it). A task only
        received (not yet accepted) is decided again after connecting; a finished one just has
        its outcome re-sent.
        """
        self._prune()
        row = self.journal.open_task()
        if row is None or row.phase not in ("accepted", "running"):
            return
        if row.pgid:
            processes.kill_group(row.pgid)
        note = f"the sidecar restarted while the task was {row.phase}; that attempt was stopped"
        recovering = Recovering(
            kind="recovering",
            agent_id=self.config.agent_id,
            task_id=row.task_id,
            generation=row.generation,
            note=note,
        )
        failed = self.work_of.outcome(row, "failed", {"recovered": True}, note)
        self.journal.advance(
            row.task_id,
            row.generation,
            "finished",
            [("recovering", dump(recovering)), ("failed", dump(failed))],
            pgid=None,
        )
        self.recovered = True
        log.warning("task.recovered_as_failed", extra={"task_id": row.task_id})

    def _prune(self) -> None:
        """Keep the journal and the per-task files bounded across months of work."""
        for task_id in self.journal.prune(self.config.journal_keep_tasks):
            for place in (
                self.config.workspaces / "task-files",
                self.config.workspaces / "scratch",
            ):
                if safe_id(task_id) and (place / task_id).is_dir():
                    shutil.rmtree(place / task_id, ignore_errors=True)

    async def _resume(self) -> None:
        self.serving = True
        for row in self.journal.received():
            self._begin(row)
        if self.restart_msg is not None and self.work is None:
            await self._restart()

    # ---- presence -----------------------------------------------------------------------

    async def _hello(self, js: JetStreamContext) -> None:
        row = self.journal.open_task()
        state = "recovering" if self.recovered else ("working" if row else "idle")
        hello = Hello(
            kind="hello",
            agent_id=self.config.agent_id,
            task_id=row.task_id if row else None,
            generation=row.generation if row else None,
            state=state,
            version=VERSION,
            supervisor=host.supervisor(),
        )
        subject = subjects.agent_report(self.config.agent_id)
        while True:
            try:
                await js.publish(subject, dump(hello), timeout=5)
                return
            except (NatsError, OSError, TimeoutError) as exc:
                log.warning("hello.failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(self.config.reconnect_wait)

    async def _heartbeats(self, js: JetStreamContext) -> None:
        subject = subjects.agent_report(self.config.agent_id)
        self.isolation = await asyncio.to_thread(registry.isolation, self.config)
        if self.isolation not in (None, "namespaces"):
            log.warning("sidecar.unisolated", extra={"isolation": self.isolation})
        while True:
            if self._hello_due.is_set():
                self._hello_due.clear()
                await self._hello(js)
            blocked = await blockers.check(self.config)
            if blocked != self.blocked:
                log.warning("agent.blocked" if blocked else "agent.ready", extra={"why": blocked})
                self.blocked = blocked
            beat = await host.heartbeat(
                self.config.agent_id,
                self.config.ollama_url,
                self.work_key[0] if self.work_key else None,
                self.isolation,
                blocked,
            )
            with contextlib.suppress(NatsError, OSError, TimeoutError):
                await js.publish(
                    subject, dump(beat), timeout=max(1.0, self.config.heartbeat_interval)
                )
            self._write_status()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.heartbeat_interval):
                    await self._hello_due.wait()

    def _write_status(self) -> None:
        row = self.journal.open_task() if self.journal else None
        status = {
            "agent_id": self.config.agent_id,
            "pid": os.getpid(),
            "connected": self.connected,
            "supervisor": host.supervisor(),
            "task_id": row.task_id if row else None,
            "generation": row.generation if row else None,
            "phase": row.phase if row else None,
            "blocked": self.blocked,
            "isolation": self.isolation,
            "updated_at": time.time(),
        }
        temp = self.config.status_path.with_suffix(".tmp")
        temp.write_text(json.dumps(status))
        temp.replace(self.config.status_path)

    # ---- inbox --------------------------------------------------------------------------

    async def _drain(self, inbox: JetStreamContext.PullSubscription) -> None:
        """Journal what already waits in the inbox, so the first hello names it."""
        with contextlib.suppress(TimeoutError, NatsError):
            for msg in await inbox.fetch(16, timeout=0.2):
                await self._on_message(msg, start=False)

    async def _serve_inbox(self, inbox: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                batch = await inbox.fetch(1, timeout=self.config.inbox_fetch_timeout)
            except TimeoutError:
                continue
            except (NatsError, OSError) as exc:  # reconnecting: the messages wait in the stream
                log.warning("inbox.fetch_failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(self.config.reconnect_wait)
                continue
            for msg in batch:
                await self._on_message(msg, start=True)

    async def _on_message(self, msg: Msg, *, start: bool) -> None:
        try:
            message = _INBOX.validate_json(msg.data)
        except ValidationError as exc:
            if (refusable := _refusable(msg.data)) is not None:
                await self._on_unreadable(msg, *refusable, start=start)
                return
            log.warning("inbox.malformed", extra={"error": exc.errors()[0]["msg"]})
            await msg.term()
            return
        if isinstance(message, Restart):
            await self._on_restart(msg)
            return
        if isinstance(message, Cancel):
            await self._on_cancel(message)
            await msg.ack()  # only now: the task is stopped and its cancel journaled
            return
        if isinstance(message, Start):
            if not self.work_of.start(message.task_id, message.generation):
                # not waiting for it: stopped by a restart (failed, reported), cancelled, or
                # given up on (`start_timeout`); the hub hears that attempt's end from us
                log.info("inbox.start_unexpected", extra={"task_id": message.task_id})
            await msg.ack()
            return
        deadline = message.deadline.timestamp() if message.deadline else None
        row = TaskRow(
            message.task.id, message.generation, message.task, "received", None, None, None
        )
        await self._on_assign(msg, dataclasses.replace(row, deadline=deadline), start=start)

    async def _on_unreadable(
        self, msg: Msg, message: _Refusable, task_id: str, why: str, *, start: bool
    ) -> None:
        log.warning("inbox.unreadable_task", extra={"task_id": task_id, "error": why[:300]})
        deadline = message.deadline.timestamp() if message.deadline else None
        row = TaskRow(
            task_id, message.generation, None, "received", None, None, None, deadline, why
        )
        await self._on_assign(msg, row, start=start, body=message.task)

    async def _on_assign(
        self, msg: Msg, row: TaskRow, *, start: bool, body: dict[str, object] | None = None
    ) -> None:
        """Journal the assignment in `row` (`body`: the raw task of one that did not parse),
        ack it, and begin it if it is new."""
        link.fault(self.config, "before_journal")
        if self.journal.newest_generation(row.task_id) > row.generation:
            log.warning("inbox.stale_assign", extra={"task_id": row.task_id})
            await msg.ack()  # the hub has re-assigned this task since: nothing to do
            return
        stored = row.task if row.task is not None else body or {}
        new = self.journal.receive(row.task_id, row.generation, stored, row.deadline)
        link.fault(self.config, "before_inbox_ack")
        await msg.ack()  # only now: the assignment is in the journal
        if new and start:
            self._begin(row)

    async def _on_cancel(self, cancel: Cancel) -> None:
        """Stop the assignment, then journal the cancel with its `cancelled` report.

        The work is awaited before anything else is read from the inbox: its process group is
        gone (SIGTERM, SIGKILL after `kill_grace`) and no delivery step is under way, so the
        next assignment finds the agent free. A cancel for a task not started or not even
        received yet is journaled all the same, so that it never starts; one for a task already
        finished is reported too, since the hub fences that outcome out and waits for this word
        to free the agent. A crash before the journal write leaves the cancel unacked: it comes
        again after the restart (which has stopped and failed the task by then).
        """
        key = (cancel.task_id, cancel.generation)
        work = self.work
        if self.work_key == key and work is not None:
            work.cancel()
            await asyncio.wait([work])
        was = self.journal.phase(*key)
        cancelled = Cancelled(
            kind="cancelled",
            agent_id=self.config.agent_id,
            task_id=cancel.task_id,
            generation=cancel.generation,
            note=f"cancelled ({cancel.reason}) while {was or 'not received'}"[:2000],
        )
        if self.journal.cancel(cancel.task_id, cancel.generation, dump(cancelled)):
            self.courier.wake.set()
        log.info(
            "task.cancelled", extra={"task_id": cancel.task_id, "reason": cancel.reason, "was": was}
        )

    async def _on_restart(self, msg: Msg) -> None:
        self.restart_msg = msg
        if not self.serving:  # during the start-up drain: `_resume` restarts once serving
            return
        if self.work is None:
            await self._restart()
        else:  # finish the task first; its outcome is journaled before we go
            await msg.in_progress()

    async def _restart(self) -> None:
        """Report `restarting` once every report is acked, then exit for the supervisor."""
        restarting = Restarting(kind="restarting", agent_id=self.config.agent_id)
        self.journal.add_report("restarting", dump(restarting))
        await self.courier.flushed(timeout=30)
        if self.restart_msg is not None:
            with contextlib.suppress(NatsError, OSError, TimeoutError):
                await self.restart_msg.ack()
        log.info("sidecar.restarting", extra={"supervisor": host.supervisor()})
        self.stopping.set()

    # ---- one task -----------------------------------------------------------------------

    def _begin(self, row: TaskRow) -> None:
        """Start work on `row`, or reject it at once if another task holds this agent.

        The same task at a newer generation means the hub took it back and gave it to us again:
        the stale attempt is stopped and the new one starts once it is gone.
        """
        key = (row.task_id, row.generation)
        previous: asyncio.Task[None] | None = None
        if self.work_key is not None and self.work_key != key:
            held_task, held_generation = self.work_key
            if held_task != row.task_id or held_generation > row.generation:
                self.work_of.reject(row, f"busy with {held_task}")
                return
            previous = self.work
            if previous is not None:
                previous.cancel()
            self.journal.advance(held_task, held_generation, "cancelled", pgid=None)
        self.work_key = key
        self.work = self._spawn(self._work_on(row, previous))

    async def _work_on(self, row: TaskRow, previous: asyncio.Task[None] | None = None) -> None:
        key = (row.task_id, row.generation)
        try:
            if previous is not None:  # its process group must be gone before we touch the tree
                await asyncio.wait([previous])
            await self.work_of.decide_and_run(row)
        except asyncio.CancelledError:
            log.info("task.stopped", extra={"task_id": row.task_id})
            if self.stopping.is_set():
                raise
        finally:
            if self.work_key == key:  # compare-and-clear: a newer assignment may hold it now
                self.work, self.work_key = None, None
            self.courier.wake.set()
        if self.restart_msg is not None:
            await self._restart()


def _refusable(data: bytes) -> tuple[_Refusable, str, str] | None:
    """An assignment with a task id and a generation whose task is not a `TaskView`: it, the
    task's id and why the task does not parse; None for anything else that is malformed."""
    try:
        message = _Refusable.model_validate_json(data)
    except ValidationError:
        return None
    task_id = message.task.get("id")
    if not isinstance(task_id, str) or not task_id:
        return None
    try:
        TaskView.model_validate(message.task)
    except ValidationError as exc:
        return message, task_id, unreadable_task(exc)
    return None  # the task parses: something else in the message is wrong


def _lock(state: Path) -> TextIO:
    """An exclusive lock on the state dir, held for the life of the process."""
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle = (state / "sidecar.lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConflictError(
            f"another sidecar is running with the state dir {state}", code="already_running"
        ) from None
    return handle
