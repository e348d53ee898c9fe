"""One task's work: accept or reject, workspace, executor, verification loop, delivery.

Each step journals its phase together with the report it causes (`accepted`, then the
outcome), so a crash between steps is settled by `Sidecar.settle_interrupted` on the next start.

Size: one job, a task's steps in order; each is short, and they share the journal-then-report
rule that makes a crash between them safe.
"""

import asyncio
import base64
import logging
import os
import re
import shutil
import time
from typing import Any, cast

from opentelemetry.trace import SpanKind

from agentcom_common import risk, task_traces, wire
from agentcom_common.contracts.agent import BLOCKED_REJECTION, TaskOutcome
from agentcom_common.contracts.delivery import CiState, DeliveryReport, DiffReview, MergeConflict
from agentcom_common.contracts.task import TaskView
from agentcom_sidecar import (
    attempts,
    blockers,
    changes,
    console,
    delivery,
    link,
    prepublish,
    processes,
    review,
    verification,
    workspaces,
)
from agentcom_sidecar.config import RepoConfig, ScanAllow, SidecarConfig
from agentcom_sidecar.executors import registry, shell
from agentcom_sidecar.executors.base import Report, ReportSink
from agentcom_sidecar.journal import Journal, TaskRow, dump
from agentcom_sidecar.progress import ProgressBatcher

log = logging.getLogger(__name__)
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def safe_id(task_id: str) -> bool:
    """A task id that is safe as the name of its per-task directories (`scratch/<id>`,
    `task-files/<id>`): no `/`, no `..`."""
    return _SAFE_ID.fullmatch(task_id) is not None


class RefusedError(Exception):
    """An assignment this agent will not take; the message is the `rejected` reason. `code`
    (one of PERMANENT_REJECTIONS) when this agent's config will never let it take the task:
    the hub then offers it to another agent without using a retry."""

    def __init__(self, reason: str, code: str | None = None) -> None:
        super().__init__(reason)
        self.code = code


class Work:
    def __init__(self, config: SidecarConfig, journal: Journal, courier: link.Courier) -> None:
        self.config, self.journal, self.courier = config, journal, courier
        self._starts: dict[tuple[str, int], asyncio.Event] = {}

    def start(self, task_id: str, generation: int) -> bool:
        """The hub's `start` for an accepted task: it may run now. False if nothing waits."""
        waiting = self._starts.get((task_id, generation))
        if waiting is None:
            return False
        waiting.set()
        return True

    async def decide_and_run(self, row: TaskRow) -> None:
        # the task's own trace (derived from its id, so a run resumed from the journal after a
        # restart joins it too): tool and model calls inside are its children
        with task_traces.span(
            row.task_id,
            "sidecar run",
            __name__,
            kind=SpanKind.CONSUMER,
            attributes={
                "agentcom.agent.id": self.config.agent_id,
                "agentcom.task.generation": row.generation,
            },
        ):
            await self._decide_and_run(row)

    async def _decide_and_run(self, row: TaskRow) -> None:
        task = row.task
        if task is None:  # journaled as it came, not a TaskView: refused, never run
            self.reject(row, row.unreadable or "the task is not a valid TaskView")
            return
        try:
            name, ws = await self._accept_checks(row, task)
        except RefusedError as exc:
            self.reject(row, str(exc), exc.code)
            return
        except OSError as exc:  # the disk said no: reject, or every restart would crash on it
            self.reject(row, f"cannot prepare the task here: {exc}")
            return
        accepted = self.outcome(row, "accepted", {"executor": name})
        key = (row.task_id, row.generation)
        self._starts[key] = asyncio.Event()
        try:
            self.journal.advance(
                row.task_id,
                row.generation,
                "accepted",
                [("accepted", dump(accepted))],
                workspace=str(ws.path) if ws else None,
                branch=ws.branch if ws else None,
            )
            self.courier.wake.set()
            outcome = await self._started_and_run(row, task, name, ws)
        finally:
            del self._starts[key]
        report = self.outcome(row, outcome.kind, outcome.result, outcome.error)
        report = report.model_copy(update={"delivery": outcome.delivery})
        self.journal.advance(
            row.task_id, row.generation, "finished", [(outcome.kind, dump(report))], pgid=None
        )
        self.courier.wake.set()
        log.info("task.finished", extra={"task_id": row.task_id, "outcome": outcome.kind})
        console.say(
            f"task {row.task_id} {outcome.kind}" + (f": {outcome.error}" if outcome.error else "")
        )

    async def _started_and_run(
        self, row: TaskRow, task: TaskView, name: str, ws: workspaces.Workspace | None
    ) -> attempts.Outcome:
        """Run the task once the hub says `start` (`Start` says why); a cancel meanwhile
        cancels this wait like any other step."""
        try:
            async with asyncio.timeout(self.config.start_timeout):
                await self._starts[(row.task_id, row.generation)].wait()
        except TimeoutError:
            log.warning("task.never_started", extra={"task_id": row.task_id})
            return attempts.Outcome(
                "failed",
                {"executor": name, "ran": False},
                f"the hub did not say start within {self.config.start_timeout:g} s "
                "(start_timeout) of the acceptance; nothing was run",
            )
        try:
            return await self._execute(row, task, name, ws)
        except Exception as exc:  # an executor bug fails this attempt, not the whole sidecar
            log.exception("task.executor_crashed", extra={"task_id": row.task_id})
            error = f"executor {name} crashed: {type(exc).__name__}"
            return attempts.Outcome("failed", {"executor": name}, error)

    def reject(self, row: TaskRow, reason: str, code: str | None = None) -> None:
        rejected = self.outcome(row, "rejected", {}, reason[:4000]).model_copy(
            update={"code": code}
        )
        self.journal.advance(
            row.task_id, row.generation, "finished", [("rejected", dump(rejected))]
        )
        self.courier.wake.set()
        log.info("task.rejected", extra={"task_id": row.task_id, "reason": reason[:300]})

    async def _accept_checks(
        self, row: TaskRow, task: TaskView
    ) -> tuple[str, workspaces.Workspace | None]:
        """Executor, command, verification steps, repo and workspace: all fine, or `RefusedError`."""
        if not safe_id(row.task_id):
            raise RefusedError("task id must match [A-Za-z0-9_-]{1,64}")
        name = registry.choose(task, self.config)
        # in a thread: the first look at an agent loop probes the kernel's namespaces
        if missing := await asyncio.to_thread(registry.unavailable, name, self.config):
            code, why = missing
            raise RefusedError(why, code)
        if name == "shell":
            argv = shell.command_of(task)
            if argv is None:
                raise RefusedError('metadata["command"] must be a non-empty list of strings')
            # a path (./build.sh) is found in the workspace when it runs; a bare name on PATH now
            if "/" not in argv[0] and shutil.which(argv[0]) is None:
                raise RefusedError(
                    f"command {argv[0]!r} is not installed on this agent", "command_missing"
                )
        steps = task.verification_steps
        if verification.needs_commands(steps) and not self.config.allow_hub_commands:
            raise RefusedError(
                "verification commands need allow_hub_commands on this agent", "hub_commands_off"
            )
        if verification.needs_commands(steps) and (
            refused := await asyncio.to_thread(registry.commands_refused, self.config)
        ):
            raise RefusedError(refused[1], refused[0])
        if (blocked := await blockers.check(self.config)) is not None:
            raise RefusedError(blocked, BLOCKED_REJECTION)  # back without a retry; blocked
        return name, await self._workspace(row, task)

    async def _workspace(self, row: TaskRow, task: TaskView) -> workspaces.Workspace | None:
        url = task.repo
        if not url:
            scratch = self.config.workspaces / "scratch" / row.task_id
            scratch.mkdir(parents=True, exist_ok=True)
            return None
        repo = self.config.repo(_clone_url(task))
        if repo is None:
            raise RefusedError(f"repo {url} is not one of this agent's repos", "repo_not_served")
        meta = task.metadata
        try:
            return await workspaces.prepare(
                self.config.workspaces,
                repo.url,
                self.config.agent_id,
                row.task_id,
                task.description,
                task.branch or None,
                self.git_env(),
                self.git_auth(repo.url),
                self.config.git_timeout,
                same_branch=meta.get("same_branch") is True,
                pr_base=_text(_object(meta.get("pull_request")).get("base")),
            )
        except workspaces.GitError as exc:
            raise RefusedError(f"workspace not ready: {exc}") from None

    async def _execute(
        self, row: TaskRow, task: TaskView, name: str, ws: workspaces.Workspace | None
    ) -> attempts.Outcome:
        path = ws.path if ws else self.config.workspaces / "scratch" / row.task_id
        console.say(f"task {row.task_id} started ({name}, attempt {row.generation})")
        # outside the state dir, which the task's commands cannot read (`registry.confinement`)
        files = self.config.workspaces / "task-files" / row.task_id
        files.mkdir(parents=True, exist_ok=True)
        (files / "task.json").write_text(task.model_dump_json())
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

        confine = await asyncio.to_thread(registry.confinement, self.config)
        hooks = registry.Hooks(on_line=batcher.add, on_start=on_start, confine=confine)
        self.journal.advance(row.task_id, row.generation, "running")
        plan = attempts.Plan(
            task=task,
            agent_id=self.config.agent_id,
            generation=row.generation,
            workspace=path,
            steps=task.verification_steps,
            max_retries=_retries(task, self.config.max_verification_retries),
            deadline=_deadline(row, task, self.config.task_timeout),
            env=env,
            feedback_file=files / "feedback.txt",
            emit=self._emitter(row),
            confine=confine,
        )

        async def on_stage(stage: str) -> None:
            batcher.flush()
            batcher.stage = stage[:64]

        async with batcher:
            outcome = await attempts.run(plan, registry.build(name, self.config, hooks), on_stage)
        if ws is not None and outcome.kind != "failed":
            await self._deliver(row, task, ws, outcome)
        return outcome

    async def _deliver(
        self, row: TaskRow, task: TaskView, ws: workspaces.Workspace, outcome: attempts.Outcome
    ) -> None:
        """Commit, scan, push and open the PR; a finding of the pre-publication scan or a
        failure turns the outcome into `failed` saying why, and then nothing is pushed."""
        repo = self.config.repo(_clone_url(task))
        try:
            head = await delivery.commit(
                ws, task, self.config.agent_id, self.git_env(), self.config.git_timeout
            )
            outcome.result |= {"branch": ws.branch, "base": ws.base, "commit": head}
            outcome.result["pushed"] = False
            if head is None:
                outcome.result["delivery_note"] = "no changes to push"
                return
            report = await self._inspect(task, ws, outcome, repo)
            outcome.delivery = report
            if report.blocked:
                outcome.kind = "failed"
                outcome.error = prepublish.summary(report.findings)[:4000]
                log.warning("task.push_blocked", extra={"task_id": row.task_id})
                return
            moved = await self._push(row, ws)
            outcome.result["pushed"] = True
            if moved is not None:  # the work is on a side branch: it conflicts with the branch
                side, conflict = moved
                outcome.result |= {"branch": side, "refused_by": ws.branch}
            else:
                # pushed first: the work is kept on its branch whatever the base did meanwhile
                conflict = await self._conflict(row, ws)
            if conflict is not None:
                report = report.model_copy(update={"conflict": conflict})
                outcome.delivery = report
                log.warning(
                    "task.merge_conflict",
                    extra={"task_id": row.task_id, "base": ws.base, "files": conflict.files[:20]},
                )
            if repo is not None and repo.github:
                outcome.delivery = await self._pull_request(row, task, ws, outcome, repo, head)
                outcome.result["pr_url"] = outcome.delivery.pull_request
        except delivery.DeliveryError as exc:
            outcome.kind = "failed"
            outcome.error = f"delivery failed: {exc}"[:4000]

    async def _push(
        self, row: TaskRow, ws: workspaces.Workspace
    ) -> tuple[str, MergeConflict] | None:
        """Push the task's branch. A continued branch (a pull request's follow-up) someone
        pushed to meanwhile refuses the fast-forward: its new commits are fetched and merged
        in when they merge, and the push is made again; when they conflict, the work is pushed
        to a branch of its own (`delivery.side_branch`) and that branch and the conflict
        (against the continued branch) are returned, for the hub to resolve."""
        env, auth, timeout = self.git_env(), self.git_auth(ws.url), self.config.git_timeout
        try:
            await delivery.push(ws, env, auth, timeout)
            return None
        except delivery.DeliveryError as exc:
            if not ws.continues:
                raise
            refused = str(exc)[:500]
        conflict = await delivery.catch_up(ws, self.config.agent_id, env, auth, timeout)
        if conflict is None:
            await delivery.push(ws, env, auth, timeout)  # a fast-forward again
            log.info("task.branch_caught_up", extra={"task_id": row.task_id, "branch": ws.branch})
            return None
        side = delivery.side_branch(ws, row.task_id)
        await delivery.push_side(ws, side, env, auth, timeout)
        log.warning(
            "task.push_conflict",
            extra={
                "task_id": row.task_id,
                "branch": ws.branch,
                "kept_on": side,
                "files": conflict.files[:20],
                "refused": refused,
            },
        )
        return side, conflict

    async def _conflict(self, row: TaskRow, ws: workspaces.Workspace) -> MergeConflict | None:
        """The pushed branch's conflict with its base; a check that cannot run is logged and
        leaves the delivery as it is (the work is pushed: failing the task would lose it)."""
        try:
            return await delivery.conflict(
                ws, self.git_env(), self.git_auth(ws.url), self.config.git_timeout
            )
        except delivery.DeliveryError as exc:
            log.warning(
                "task.conflict_unchecked", extra={"task_id": row.task_id, "error": str(exc)[:500]}
            )
            return None

    async def _inspect(
        self,
        task: TaskView,
        ws: workspaces.Workspace,
        outcome: attempts.Outcome,
        repo: RepoConfig | None,
    ) -> DeliveryReport:
        """The committed change's stats, pre-publication findings and risk tier."""
        try:
            change = await changes.read(
                ws.path,
                f"origin/{ws.base}",
                self.git_env(),
                self.config.git_timeout,
                self.config.prepublish.max_scan_bytes,
            )
        except workspaces.GitError as exc:
            raise delivery.DeliveryError(str(exc)) from None
        allow = repo.prepublish_allow if repo else ScanAllow()
        found = await asyncio.to_thread(prepublish.scan, change, self.config.prepublish, allow)
        if found:  # nothing of a blocked change leaves the machine: not even to a reviewer
            return DeliveryReport(diff=change.stats, findings=found[:200], blocked=True)
        checked: object = _object(outcome.result.get("verification")).get("status")
        status: risk.Verification = (
            "pass" if checked == "pass" else "fail" if checked == "fail" else "not_verified"
        )
        reviewed = await self._review(task, change.diff, outcome.result.get("model"))
        return DeliveryReport(
            diff=change.stats,
            review=reviewed,
            risk=risk.assess(change.stats, status, reviewed, self.config.risk),
        )

    async def _review(self, task: TaskView, diff: str, writer: object) -> DiffReview | None:
        if not self.config.review.enabled:
            return None
        return await review.ask(
            self.config.gateway_url or self.config.hub_urls.get("llm-registry"),
            self.config.token.get_secret_value(),
            task,
            diff,
            writer if isinstance(writer, str) and writer else None,
            self.config.review,
        )

    async def _pull_request(
        self,
        row: TaskRow,
        task: TaskView,
        ws: workspaces.Workspace,
        outcome: attempts.Outcome,
        repo: RepoConfig,
        head: str,
    ) -> DeliveryReport:
        """Open the PR as its tier says (a draft for tier 3, at most what the goal's autonomy
        level allows) and merge it when that is due and, in a repo with CI, green."""
        assert outcome.delivery is not None
        assert outcome.delivery.risk is not None
        assert repo.github
        checked = _object(outcome.result.get("verification")).get("status")
        verified: risk.Verification = "pass" if checked == "pass" else "not_verified"
        cap = risk.cap_of(task.metadata.get("autonomy"))
        due = risk.action(outcome.delivery.risk.tier, verified, repo.auto_merge, cap)
        if due == "merge" and outcome.delivery.conflict is not None:
            due = "review"  # it cannot merge as it is: a person or a follow-up resolves it
        delivered = outcome.delivery.model_copy(update={"cap": cap, "action": due})
        title = f"{row.task_id}: {task.description[:60]}"
        body = delivery.pr_body(
            task, _object(outcome.result.get("verification")), self.config.agent_id, delivered
        )
        token = self.config.github_token.get_secret_value() if self.config.github_token else None
        api, timeout = self.config.github_api_url, self.config.http_timeout
        pull = await delivery.open_pull_request(
            api, token, repo.github, ws, title, body, timeout, draft=due == "draft"
        )
        update: dict[str, object] = {"pull_request": pull.url}
        if due != "merge":
            return delivered.model_copy(update=update)
        ci: CiState = "none"
        note: str | None = None
        if repo.ci:
            ci, note = await delivery.wait_for_ci(
                api,
                token,
                repo.github,
                head,
                timeout,
                self.config.ci_wait,
                self.config.ci_poll_interval,
            )
        merged = False
        if ci in ("green", "none"):  # red or still pending: the pull request waits for a person
            note = await delivery.merge_pull_request(
                api, token, repo.github, pull.number, head, timeout
            )
            merged = note is None
        update |= {"ci": ci, "merged": merged, "merge_note": note and note[:500]}
        return delivered.model_copy(update=update)

    def _emitter(self, row: TaskRow) -> ReportSink:
        """An executor's own progress and tool_call reports, journaled like every report."""

        async def emit(report: Report) -> None:
            if (report.task_id, report.generation) != (row.task_id, row.generation):
                return  # an executor may only speak about its own assignment
            self.journal.add_report(report.kind, dump(report), row.task_id, row.generation)
            self.courier.wake.set()

        return emit

    def git_env(self) -> dict[str, str]:
        """For every git call of the sidecar's own (never a task's commands): no credential."""
        return processes.scrubbed_env()

    def git_auth(self, url: str) -> dict[str, str]:
        """Added to `git_env` only for the clone, fetch, ls-remote and push that reach `url`:
        the SSH agent, and for a GitHub HTTPS URL the token as an HTTP header through git's
        environment config (never argv, which every user of the machine can read). No hook
        runs and no repo config is read there (`workspaces`), so nothing the task planted
        sees it."""
        auth: dict[str, str] = {}
        if sock := os.environ.get("SSH_AUTH_SOCK"):
            auth["SSH_AUTH_SOCK"] = sock
        if self.config.github_token is not None and url.startswith("https://github.com/"):
            basic = base64.b64encode(
                f"x-access-token:{self.config.github_token.get_secret_value()}".encode()
            ).decode()
            auth |= {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.https://github.com/.extraheader",
                "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {basic}",
            }
        return auth

    def outcome(
        self, row: TaskRow, kind: Any, result: dict[str, Any], error: str | None = None
    ) -> TaskOutcome:
        # a command's output or a model's words may hold NUL or lone surrogates, which the
        # hub refuses: the outcome is built from storable text so it can always be sent
        return TaskOutcome(
            kind=kind,
            agent_id=self.config.agent_id,
            task_id=row.task_id,
            generation=row.generation,
            result=wire.storable(result),
            error=None if error is None else wire.storable_text(error),
        )


def _retries(task: TaskView, default: int) -> int:
    value: object = task.metadata.get("max_verification_retries", default)
    return max(0, min(5, int(value))) if isinstance(value, int) else default


def _deadline(row: TaskRow, task: TaskView, limit: float) -> float:
    """When the whole assignment must have stopped, in event-loop time: the hub's deadline
    (carried by the assignment), else `task_timeout` from now; `metadata.timeout_s` and the
    agent's own `task_timeout` may only bring it closer. The hub sends wall-clock time, so the
    two hosts' clocks must agree (NTP) to well within the hub's grace."""
    seconds = limit
    value: object = task.metadata.get("timeout_s")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        seconds = min(float(value), seconds)
    if row.deadline is not None:
        seconds = min(row.deadline - time.time(), seconds)
    return asyncio.get_running_loop().time() + seconds


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _object(value: object) -> dict[str, Any]:
    """`value` if it is a JSON object (a metadata entry, a result's `verification`), else {}."""
    return cast("dict[str, Any]", value) if isinstance(value, dict) else {}


def _clone_url(task: TaskView) -> str:
    """The task's repo URL as submitted, else its key (a task from an older queue). Configured
    repos are matched by key either way; with none configured this is what gets cloned, and the
    key is not always the same repository (`/srv/calc` vs `/srv/calc.git`)."""
    return str(task.repo_url or task.repo)
