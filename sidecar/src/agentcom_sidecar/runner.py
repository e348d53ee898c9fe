"""The sidecar process: inbox in, work done, reports out, and a journal that survives kill -9.

Order of a start: settle what the journal says was interrupted (a task that was running is
stopped and failed cleanly, after a `recovering` report), connect, take what waits in the inbox
into the journal, say `hello` naming the task still held, then serve: the inbox loop, the
courier, heartbeats and the status file run side by side, and the work runs as its own asyncio
task so cancel, restart and heartbeats are never blocked by it.
"""

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from pydantic import TypeAdapter, ValidationError

from agentcom_common import subjects
from agentcom_common.contracts.agent import (
    Assign,
    Cancel,
    Hello,
    Recovering,
    Restart,
    Restarting,
    TaskOutcome,
)
from agentcom_sidecar import (
    attempts,
    delivery,
    host,
    link,
    processes,
    taskdata,
    verification,
    workspaces,
)
from agentcom_sidecar.config import SidecarConfig
from agentcom_sidecar.executors import registry, shell
from agentcom_sidecar.executors.base import Report, ReportSink
from agentcom_sidecar.journal import Journal, TaskRow
from agentcom_sidecar.progress import ProgressBatcher

log = logging.getLogger(__name__)
VERSION = "0.1.0"
_INBOX: TypeAdapter[Assign | Cancel | Restart] = TypeAdapter(Assign | Cancel | Restart)
Key = tuple[str, int]


class RefusedError(Exception):
    """An assignment this agent will not take; the message is the `rejected` reason."""


class Sidecar:
    def __init__(self, config: SidecarConfig) -> None:
        self.config = config
        self.journal = Journal(config.journal_path)
        self.courier = link.Courier(self.journal, config)
        self.work: asyncio.Task[None] | None = None
        self.work_key: Key | None = None
        self.recovered = False
        self.restart_msg: Msg | None = None
        self.stopping = asyncio.Event()
        self.nc: Client | None = None
        self.serving = False
        self._hello_due = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- start, serve, stop -------------------------------------------------------------

    async def run(self) -> int:
        """Serve until a `restart` (exit 0 for the supervisor to start us again) or a cancel."""
        self.settle_interrupted()
        nc = self.nc = await link.connect(self.config, self._on_reconnect)
        try:
            js = nc.jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
            inbox = await self._bind(js)
            await self._drain(inbox)
            await self._hello(js)
            for coro in (
                self.courier.run(js),
                self._serve_inbox(inbox),
                self._heartbeats(js),
                self._resume(),
            ):
                self._spawn(coro)
            await self.stopping.wait()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(NatsError, OSError, TimeoutError):
                async with asyncio.timeout(5):
                    await nc.close()  # not drain(): a pull subscription's drain waits its timeout
            self.nc = None
            self._write_status()
            self.journal.close()
        return 0

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
        failed = self._outcome(row, "failed", {"recovered": True}, note)
        self.journal.advance(
            row.task_id,
            row.generation,
            "finished",
            [("recovering", _dump(recovering)), ("failed", _dump(failed))],
            pgid=None,
        )
        self.recovered = True
        log.warning("task.recovered_as_failed", extra={"task_id": row.task_id})

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
                await js.publish(subject, _dump(hello), timeout=5)
                return
            except (NatsError, OSError, TimeoutError) as exc:
                log.warning("hello.failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(self.config.reconnect_wait)

    async def _heartbeats(self, js: JetStreamContext) -> None:
        subject = subjects.agent_report(self.config.agent_id)
        while True:
            if self._hello_due.is_set():
                self._hello_due.clear()
                await self._hello(js)
            beat = await host.heartbeat(
                self.config.agent_id,
                self.config.ollama_url,
                self.work_key[0] if self.work_key else None,
            )
            with contextlib.suppress(NatsError, OSError, TimeoutError):
                await js.publish(
                    subject, _dump(beat), timeout=max(1.0, self.config.heartbeat_interval)
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
            log.warning("inbox.malformed", extra={"error": exc.errors()[0]["msg"]})
            await msg.term()
            return
        if isinstance(message, Restart):
            await self._on_restart(msg)
            return
        if isinstance(message, Cancel):
            self._on_cancel(message)
            await msg.ack()
            return
        task_id = str(message.task.get("id", ""))
        link.fault(self.config, "before_journal")
        if self.journal.newest_generation(task_id) > message.generation:
            log.warning("inbox.stale_assign", extra={"task_id": task_id})
            await msg.ack()  # the hub has re-assigned this task since: nothing to do
            return
        new = self.journal.receive(task_id, message.generation, message.task)
        link.fault(self.config, "before_inbox_ack")
        await msg.ack()  # only now: the assignment is in the journal
        if new and start:
            self._begin(
                TaskRow(task_id, message.generation, message.task, "received", None, None, None)
            )

    def _on_cancel(self, cancel: Cancel) -> None:
        key = (cancel.task_id, cancel.generation)
        if self.work_key == key and self.work is not None:
            self.work.cancel()
        self.journal.advance(cancel.task_id, cancel.generation, "cancelled", pgid=None)
        log.info("task.cancelled", extra={"task_id": cancel.task_id, "reason": cancel.reason})

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
        self.journal.add_report("restarting", _dump(restarting))
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
                self._reject(row, f"busy with {held_task}")
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
            await self._decide_and_run(row)
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

    async def _decide_and_run(self, row: TaskRow) -> None:
        try:
            name, ws = await self._accept_checks(row)
        except RefusedError as exc:
            self._reject(row, str(exc))
            return
        accepted = self._outcome(row, "accepted", {"executor": name})
        self.journal.advance(
            row.task_id,
            row.generation,
            "accepted",
            [("accepted", _dump(accepted))],
            workspace=str(ws.path) if ws else None,
            branch=ws.branch if ws else None,
        )
        self.courier.wake.set()
        outcome = await self._execute(row, name, ws)
        report = self._outcome(row, outcome.kind, outcome.result, outcome.error)
        self.journal.advance(
            row.task_id, row.generation, "finished", [(outcome.kind, _dump(report))], pgid=None
        )
        self.courier.wake.set()
        log.info("task.finished", extra={"task_id": row.task_id, "outcome": outcome.kind})

    def _reject(self, row: TaskRow, reason: str) -> None:
        rejected = self._outcome(row, "rejected", {}, reason[:4000])
        self.journal.advance(
            row.task_id, row.generation, "finished", [("rejected", _dump(rejected))]
        )
        self.courier.wake.set()
        log.info("task.rejected", extra={"task_id": row.task_id, "reason": reason[:300]})

    async def _accept_checks(self, row: TaskRow) -> tuple[str, workspaces.Workspace | None]:
        """Executor, command, verification steps, repo and workspace: all fine, or `RefusedError`."""
        task = row.body
        name = registry.choose(task, self.config)
        if why := registry.unavailable(name, self.config):
            raise RefusedError(why)
        if name == "shell":
            argv = shell.command_of(task)
            if argv is None:
                raise RefusedError('metadata["command"] must be a non-empty list of strings')
            if shutil.which(argv[0]) is None:
                raise RefusedError(f"command {argv[0]!r} is not installed on this agent")
        try:
            steps = verification.parse_steps(task)
        except ValueError as exc:
            raise RefusedError(str(exc)) from None
        if verification.needs_commands(steps) and not self.config.allow_hub_commands:
            raise RefusedError("verification commands need allow_hub_commands on this agent")
        free_mb = await asyncio.to_thread(_free_mb, self.config.workspaces)
        if free_mb < self.config.min_free_disk_mb:
            raise RefusedError(
                f"only {free_mb} MB free for workspaces; this agent needs "
                f"{self.config.min_free_disk_mb} MB (min_free_disk_mb)"
            )
        return name, await self._workspace(row)

    async def _workspace(self, row: TaskRow) -> workspaces.Workspace | None:
        url = row.body.get("repo")
        if not url:
            scratch = self.config.workspaces / "scratch" / row.task_id
            scratch.mkdir(parents=True, exist_ok=True)
            return None
        repo = self.config.repo(str(url))
        if repo is None:
            raise RefusedError(f"repo {url} is not one of this agent's repos")
        try:
            return await workspaces.prepare(
                self.config.workspaces,
                repo.url,
                self.config.agent_id,
                row.task_id,
                str(row.body.get("description", "")),
                row.body.get("branch") or None,
                processes.scrubbed_env(),
                self.config.git_timeout,
            )
        except workspaces.GitError as exc:
            raise RefusedError(f"workspace not ready: {exc}") from None

    async def _execute(
        self, row: TaskRow, name: str, ws: workspaces.Workspace | None
    ) -> attempts.Outcome:
        path = ws.path if ws else self.config.workspaces / "scratch" / row.task_id
        files = self.config.state / "tasks" / row.task_id
        files.mkdir(parents=True, exist_ok=True)
        (files / "task.json").write_text(json.dumps(row.body))
        env = processes.scrubbed_env({"AGENTCOM_TASK_FILE": str(files / "task.json")})
        batcher = ProgressBatcher(
            self.journal,
            self.courier.wake,
            self.config.agent_id,
            row.task_id,
            row.generation,
            interval=self.config.progress_interval,
            max_lines=self.config.progress_max_lines,
        )

        def on_start(pgid: int) -> None:
            self.journal.set_pgid(row.task_id, row.generation, pgid)

        hooks = registry.Hooks(on_line=batcher.add, on_start=on_start)
        self.journal.advance(row.task_id, row.generation, "running")
        plan = attempts.Plan(
            task=row.body,
            agent_id=self.config.agent_id,
            generation=row.generation,
            workspace=path,
            steps=verification.parse_steps(row.body),
            max_retries=_retries(row.body, self.config.max_verification_retries),
            attempt_timeout=_timeout(row.body, self.config.task_timeout),
            env=env,
            feedback_file=files / "feedback.txt",
            emit=self._emitter(row),
        )

        async def on_stage(stage: str) -> None:
            batcher.flush()
            batcher.stage = stage[:64]

        async with batcher:
            outcome = await attempts.run(plan, registry.build(name, self.config, hooks), on_stage)
        if ws is not None and outcome.kind != "failed":
            await self._deliver(row, ws, env, outcome)
        return outcome

    async def _deliver(
        self, row: TaskRow, ws: workspaces.Workspace, env: dict[str, str], outcome: attempts.Outcome
    ) -> None:
        """Commit, push and open the PR; a failure turns the outcome into `failed` saying why."""
        try:
            head, pushed = await delivery.commit_and_push(
                ws, row.body, self.config.agent_id, env, self.config.git_timeout
            )
            outcome.result |= {
                "branch": ws.branch,
                "base": ws.base,
                "commit": head,
                "pushed": pushed,
            }
            repo = self.config.repo(str(row.body.get("repo")))
            github = repo.github if repo else None
            if pushed and github:
                title = f"{row.task_id}: {str(row.body.get('description', ''))[:60]}"
                body = delivery.pr_body(
                    row.body, outcome.result.get("verification", {}), self.config.agent_id
                )
                token = (
                    self.config.github_token.get_secret_value()
                    if self.config.github_token
                    else None
                )
                outcome.result["pr_url"] = await delivery.open_pull_request(
                    self.config.github_api_url,
                    token,
                    github,
                    ws,
                    title,
                    body,
                    self.config.http_timeout,
                )
            elif not pushed:
                outcome.result["delivery_note"] = "no changes to push"
        except delivery.DeliveryError as exc:
            outcome.kind = "failed"
            outcome.error = f"delivery failed: {exc}"[:4000]

    def _emitter(self, row: TaskRow) -> ReportSink:
        """An executor's own progress and tool_call reports, journaled like every report."""

        async def emit(report: Report) -> None:
            if (report.task_id, report.generation) != (row.task_id, row.generation):
                return  # an executor may only speak about its own assignment
            self.journal.add_report(report.kind, _dump(report), row.task_id, row.generation)
            self.courier.wake.set()

        return emit

    def _outcome(
        self, row: TaskRow, kind: Any, result: dict[str, Any], error: str | None = None
    ) -> TaskOutcome:
        return TaskOutcome(
            kind=kind,
            agent_id=self.config.agent_id,
            task_id=row.task_id,
            generation=row.generation,
            result=result,
            error=error,
        )


def _retries(task: dict[str, Any], default: int) -> int:
    value: object = taskdata.metadata(task).get("max_verification_retries", default)
    return max(0, min(5, int(value))) if isinstance(value, int) else default


def _free_mb(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free // 2**20


def _timeout(task: dict[str, Any], limit: float) -> float:
    """`metadata.timeout_s` if the task asks for a shorter deadline than the agent allows."""
    value: object = taskdata.metadata(task).get("timeout_s")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return min(float(value), limit)
    return limit


def _dump(model: Any) -> bytes:
    return model.model_dump_json().encode()
