"""The pull-request feedback loop: what GitHub says about a pull request one of our goals'
tasks opened becomes a follow-up task on the same branch, carrying what was said.

A pull request is ours when its head branch is a task branch a sidecar made
(`agentcom/<agent>/<task-id>-<slug>`) of a task the hub submitted for a goal. Each failed
commit (all of its failed checks together), each review asking for changes, and each head
commit that no longer merges into its base is one *round*. A round is counted under the pull
request's row lock, keyed by its cause (so a redelivery or a second failed job of the same
commit makes no second round) and never reset (a new push resets nothing). Rounds up to
`AGENTCOM_HUB_PR_FEEDBACK_ROUNDS` make a follow-up task; the next one instead sends the goal to
`needs_review` and publishes `agentcom.evt.github.pr_escalated` (critical) for a person, and so
does every round after it: nothing is dropped silently.

The follow-up names the agent that did the work (`metadata.prefer_agent`) and works on the pull
request's branch itself (`branch` + `metadata.same_branch`: the sidecar checks it out and pushes
to it, so the pull request updates). The queue does not yet steer a task to a named agent: any
agent that serves the repo may take it (see docs/hub.md).

Size: one job, turning what GitHub says about one of our pull requests into rounds; the three
causes (failed checks, reviews, conflicts) share the ownership check, the round counter under
the row lock and the follow-up/escalation writers, which would only be passed around if split.
"""

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common import clock, outbox, subjects, transitions
from agentcom_common.contracts.github import DeliveryOutcome, PrEscalated, RoundKind
from agentcom_common.contracts.hub import GoalState
from agentcom_common.contracts.task import Lane, SubmitTask, SubmitTasks, TaskState
from agentcom_common.errors import AgentcomError
from agentcom_hubfsm.goals import states as goal_states, store as goal_store
from agentcom_hubfsm.tables import goal_tasks, goals, pull_requests
from agentcom_hubfsm.webhooks import store
from agentcom_hubfsm.webhooks.github import GitHubReadError, Pull, parse_pull
from agentcom_hubfsm.webhooks.hooks import Hooks
from agentcom_hubfsm.webhooks.payload import dig

Answer = tuple[DeliveryOutcome, str]
"""(outcome, reason) of one delivery; what was done goes to `Delivery.done`."""
BRANCH = re.compile(r"^agentcom/([A-Za-z0-9_-]{1,64})/(task-[0-9a-f]{16})-")
ACTOR = "github"


@dataclass(frozen=True, slots=True)
class Failure:
    name: str
    sha: str
    url: str
    jobs: list[tuple[int, str]]  # (job id, job name) whose logs say why


@dataclass(frozen=True, slots=True)
class Ours:
    goal: Row[Any]
    task_id: str
    agent_id: str


async def ours(h: Hooks, branch: str) -> Ours | None:
    """The goal whose task this branch is, or None (not a task branch, not a goal's task)."""
    named = BRANCH.match(branch)
    if named is None:
        return None
    async with h.engine.connect() as conn:
        goal = (
            await conn.execute(
                select(goals)
                .join(goal_tasks, goal_tasks.c.goal_id == goals.c.id)
                .where(goal_tasks.c.task_id == named[2])
            )
        ).one_or_none()
    return None if goal is None else Ours(goal, named[2], named[1])


async def log_tails(h: Hooks, repo: str, jobs: list[tuple[int, str]]) -> str:
    """The last lines of each failed job's log (at most three jobs); a log that cannot be read
    says so and why, in its place."""
    lines = h.settings.hub_github_log_tail
    parts: list[str] = []
    for job_id, name in jobs[:3]:
        try:
            tail = await h.github.log_tail(repo, job_id, lines)
        except GitHubReadError as exc:
            tail = f"(the log could not be read: {exc})"
        parts.append(f"--- {name} (job {job_id}), last {lines} lines ---\n{tail}")
    return "\n".join(parts) or "(GitHub named no failed job)"


def _track_values(repo: str, pull: Pull, mine: Ours) -> dict[str, Any]:
    return {
        "repo": repo,
        "number": pull.number,
        "url": pull.url,
        "branch": pull.branch,
        "base": pull.base,
        "goal_id": mine.goal.id,
        "task_id": mine.task_id,
        "agent_id": mine.agent_id,
        "state": "merged" if pull.merged else pull.state,
    }


def _pull_of(payload: dict[str, Any]) -> Pull | None:
    body: object = payload.get("pull_request")
    if not isinstance(body, dict):
        return None
    try:
        return parse_pull(body)
    except GitHubReadError:
        return None


async def pull_request(h: Hooks, d: store.Delivery, repo: str, payload: dict[str, Any]) -> Answer:
    pull = _pull_of(payload)
    if pull is None:
        return "ignored", "the pull_request event carries no pull request"
    mine = await ours(h, pull.branch)
    if mine is None:
        return "ignored", f"pull request #{pull.number} is not from one of our goals' tasks"
    if d.action not in ("opened", "reopened", "closed", "synchronize", "edited"):
        return "ignored", f"pull_request {d.action} changes nothing the hub follows"
    async with h.engine.begin() as conn:
        await store.track_pull(conn, _track_values(repo, pull, mine))
        state = "merged" if pull.merged else pull.state
        changed = await store.set_pull_state(conn, repo, pull.number, state)
    if changed or d.action in ("opened", "reopened"):
        d.done.append(f"pull request #{pull.number} of goal {mine.goal.id} is {state}")
        return "acted", f"pull request #{pull.number} {d.action}"
    return "ignored", f"pull request #{pull.number} was already {state}"


async def pushed(h: Hooks, repo: str, branch: str) -> str:
    """Said of a push to one of our pull requests' branches: its rounds stand."""
    async with h.engine.connect() as conn:
        found = (
            await conn.execute(
                select(pull_requests).where(
                    pull_requests.c.repo == repo, pull_requests.c.branch == branch
                )
            )
        ).first()
    if found is None:
        return ""
    return f"; pull request #{found.number} keeps its {found.rounds} feedback rounds"


async def _find_pull(h: Hooks, d: store.Delivery, repo: str, branch: str) -> Pull | None:
    try:
        return await h.github.pull_for(repo, branch)
    except GitHubReadError as exc:
        d.done.append(f"could not find the pull request of {branch}: {exc}")
        return None


async def check_failed(
    h: Hooks, d: store.Delivery, repo: str, branch: str, failed: Failure
) -> Answer:
    mine = await ours(h, branch)
    if mine is None:
        return "ignored", f"{failed.name} failed on {branch}, not one of our goals' branches"
    pull = await _find_pull(h, d, repo, branch)
    if pull is None:
        return "ignored", f"{failed.name} failed on {branch}, which has no open pull request"
    tail = await log_tails(h, repo, failed.jobs)
    summary = f"{failed.name} failed on {failed.sha[:12]}"
    ask = (
        f"Make the failing check pass on pull request {pull.url}\n\n"
        f"The check {failed.name!r} failed on commit {failed.sha} of the branch {branch} "
        f"({failed.url}). The end of the failing job's log:\n\n```\n{tail}\n```"
    )
    work = Work("check_failed", failed.sha, summary, tail, ask, f"{failed.name} passes")
    return await _round(h, d, repo, pull, mine, work)


async def review(h: Hooks, d: store.Delivery, repo: str, payload: dict[str, Any]) -> Answer:
    state = dig(payload, "review", "state")
    if d.action != "submitted" or str(state).lower() != "changes_requested":
        return "ignored", f"review {d.action} ({state}): only a review asking for changes acts"
    pull = _pull_of(payload)
    if pull is None:
        return "ignored", "the review event carries no pull request"
    mine = await ours(h, pull.branch)
    if mine is None:
        return "ignored", f"pull request #{pull.number} is not from one of our goals' tasks"
    review_id = int(dig(payload, "review", "id") or 0)
    who = dig(payload, "review", "user", "login") or "a reviewer"
    said = str(dig(payload, "review", "body") or "").strip()
    try:
        comments = await h.github.review_comments(repo, pull.number, review_id)
        listed = "\n".join(
            f"- {c.path}:{c.line if c.line is not None else '?'}: {c.body}" for c in comments
        )
    except GitHubReadError as exc:
        listed = f"(the review's comments could not be read: {exc})"
    context = f"{who} asked for changes: {said or '(no summary)'}\n{listed}".strip()
    ask = (
        f"Address the review asking for changes on pull request {pull.url}\n\n"
        f"On the branch {pull.branch}, {context}"
    )
    work = Work(
        "changes_requested",
        str(review_id),
        f"{who} asked for changes",
        context,
        ask,
        "the review's comments are addressed",
    )
    return await _round(h, d, repo, pull, mine, work)


async def conflicts(h: Hooks, d: store.Delivery, repo: str, base: str, after: str) -> None:
    """After a push to `base`: a round for each of our open pull requests on it that GitHub
    says no longer merges (`mergeable` false), keyed by the pull request's head commit."""
    async with h.engine.connect() as conn:
        pulls = await store.open_pulls(conn, repo, base)
    for row in pulls:
        try:
            pull = await h.github.pull(repo, row.number)
        except GitHubReadError as exc:
            d.done.append(f"could not read pull request #{row.number}: {exc}")
            continue
        if pull.mergeable is not False:
            continue
        mine = await ours(h, pull.branch)
        if mine is None:
            continue
        files = await _conflicting(h, mine.goal.repo, base, pull.branch)
        context = (
            f"GitHub reports that {pull.branch} no longer merges into {base} "
            f"(after {after[:12] or 'a push'} to {base}). {files}"
        )
        ask = (
            f"Resolve the merge conflict of pull request {pull.url}\n\n{context} Merge {base} "
            "into the branch, resolve every conflict, and keep the branch's checks passing."
        )
        work = Work(
            "merge_conflict",
            pull.head_sha,
            f"conflicts with {base}",
            context,
            ask,
            f"the branch merges cleanly into {base}",
        )
        await _round(h, d, repo, pull, mine, work)


async def delivered_conflict(
    h: Hooks, repo: str, number: int, files: list[str], kept_on: str | None = None
) -> str:
    """A sidecar pushed to pull request `number` of `repo` (owner/name) and found the branch
    conflicting with its base (`DeliveryReport.conflict`), or, `kept_on`, found the branch
    itself moved (someone pushed to it while a follow-up ran) and conflicting with the
    follow-up's work, which it pushed to the branch `kept_on` instead: a round keyed by the
    head commit, carrying the files the sidecar named. What was done, as a sentence."""
    try:
        pull = await h.github.pull(repo, number)
    except GitHubReadError as exc:
        return f"could not read pull request #{number} of {repo}: {exc}"
    mine = await ours(h, pull.branch)
    if mine is None:
        return f"pull request #{number} is not from one of our goals' tasks"
    listed = ", ".join(files[:50]) or "(not listed)"
    if kept_on is None:
        context = (
            f"The sidecar that pushed {pull.branch} found it no longer merges into "
            f"{pull.base}. Conflicting files: {listed}"
        )
        into, done = pull.base, f"the branch merges cleanly into {pull.base}"
    else:
        context = (
            f"The push of a follow-up to {pull.branch} was refused: someone pushed to the "
            f"branch meanwhile, and the follow-up's work (kept on {kept_on}) conflicts with "
            f"it. Conflicting files: {listed}"
        )
        into, done = kept_on, f"the work of {kept_on} is on the branch, merged cleanly"
    ask = (
        f"Resolve the merge conflict of pull request {pull.url}\n\n{context}. Merge "
        f"{into} into the branch, resolve every conflict, and keep the branch's checks "
        "passing."
    )
    work = Work("merge_conflict", pull.head_sha, f"conflicts with {into}", context, ask, done)
    d = store.Delivery(delivery=None, event="delivery")
    _, reason = await _round(h, d, repo, pull, mine, work)
    return "; ".join([reason, *d.done])


async def _conflicting(h: Hooks, url: str, base: str, branch: str) -> str:
    """The conflicting files as the hub's mirror of the goal's repo shows them."""
    try:
        files = await h.cache.conflicts(url, base, branch)
    except AgentcomError as exc:  # the mirror could not be fetched: say so, keep the round
        return f"The conflicting files could not be read: {exc.detail}"
    if not files:
        return "The hub's mirror shows no conflicting file yet (GitHub may be ahead of it)."
    return "Conflicting files: " + ", ".join(files[:50])


@dataclass(frozen=True, slots=True)
class Work:
    kind: RoundKind
    cause: str
    summary: str
    context: str
    ask: str
    criterion: str


async def _round(
    h: Hooks, d: store.Delivery, repo: str, pull: Pull, mine: Ours, work: Work
) -> Answer:
    limit = h.settings.hub_pr_feedback_rounds
    async with h.engine.begin() as conn:
        row = await store.track_pull(conn, _track_values(repo, pull, mine))
        if await store.has_round(conn, repo, pull.number, work.kind, work.cause):
            return "ignored", f"pull request #{pull.number} had its round for this already"
        goal = await goal_store.get(conn, mine.goal.id, lock=True)
        assert goal is not None  # the pull request's row holds the goal (foreign key)
        if goal.state == GoalState.CANCELLED.value:
            return "ignored", f"goal {goal.id} of pull request #{pull.number} was cancelled"
        number = int(row.rounds) + 1
        values: dict[str, Any] = {
            "repo": repo,
            "number": pull.number,
            "round": number,
            "kind": work.kind,
            "cause": work.cause[:200],
            "goal_id": goal.id,
            "summary": work.summary[:500],
            "context": work.context[:8000],
        }
        if number > limit:
            await _escalate(conn, h, goal, pull, repo, number, work)
            await store.add_round(conn, values | {"task_id": None, "escalated": True})
            d.done.append(
                f"round {number} of pull request #{pull.number}: past {limit} rounds, goal "
                f"{goal.id} needs review; published agentcom.evt.github.pr_escalated"
            )
            return "acted", f"pull request #{pull.number}: {work.summary}; escalated"
        task_id = await _follow_up(conn, h, goal, pull, repo, number, work, mine)
        await store.add_round(conn, values | {"task_id": task_id, "escalated": False})
    d.done.append(
        f"round {number} of {limit} for pull request #{pull.number}: follow-up task {task_id} "
        f"on {pull.branch}"
    )
    return "acted", f"pull request #{pull.number}: {work.summary}"


async def _follow_up(
    conn: AsyncConnection,
    h: Hooks,
    goal: Row[Any],
    pull: Pull,
    repo: str,
    number: int,
    work: Work,
    mine: Ours,
) -> str:
    """Submit the round's task (its `client_key` makes a repeat return the same task) and
    record it as the goal's `pr_feedback` task."""
    key = f"pr:{repo}#{pull.number}:{number}"
    limit = h.settings.hub_pr_feedback_rounds
    task = SubmitTask(
        description=(
            f"{work.ask}\n\nThis is feedback round {number} of {limit} for this pull request "
            f"(goal {goal.title!r}). Work on the branch {pull.branch} as it is and push to it."
        )[:10_000],
        priority=Lane(goal.priority),
        repo=goal.repo,
        branch=pull.branch,
        success_criteria=[work.criterion[:500]],
        goal_id=goal.id,
        client_key=key,
        metadata={
            "same_branch": True,
            "prefer_agent": mine.agent_id,
            "pull_request": {
                "repo": repo,
                "number": pull.number,
                "url": pull.url,
                "base": pull.base,
            },
            "feedback": {"round": number, "of": limit, "kind": work.kind},
            "goal_title": goal.title[:200],
            "autonomy": goal.autonomy,
        },
    )
    (task_id,) = await h.queue.submit(SubmitTasks(tasks=[task]))
    title = f"PR #{pull.number} round {number}: {work.summary}"[:200]
    await goal_store.add_tasks(
        conn, goal.id, goal.attempt, "pr_feedback", [(task_id, key, title, TaskState.QUEUED.value)]
    )
    return task_id


async def _escalate(
    conn: AsyncConnection,
    h: Hooks,
    goal: Row[Any],
    pull: Pull,
    repo: str,
    number: int,
    work: Work,
) -> None:
    limit = h.settings.hub_pr_feedback_rounds
    reason = (
        f"pull request #{pull.number} used its {limit} feedback rounds; round {number}: "
        f"{work.summary}"
    )[:500]
    if GoalState.NEEDS_REVIEW in _next(goal.state):
        await transitions.move(
            conn,
            goal_store.MACHINE,
            goal.id,
            GoalState.NEEDS_REVIEW,
            reason=reason,
            actor=ACTOR,
            values={"reason": reason},
        )
    event = PrEscalated(
        repo=repo,
        number=pull.number,
        url=pull.url,
        goal_id=goal.id,
        rounds=number,
        kind=work.kind,
        summary=reason,
        at=clock.now(),
    )
    await outbox.add(conn, h.outbox, subjects.GITHUB_PR_ESCALATED, event)


def _next(state: str) -> frozenset[GoalState]:
    return goal_states.TRANSITIONS[GoalState(state)]
