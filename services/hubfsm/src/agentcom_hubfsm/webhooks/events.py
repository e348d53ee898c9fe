"""What the hub does with each GitHub event; every other event is recorded and ignored.

- `push` to the default branch: refresh the mirror of every goal repo it is, wake the brain,
  and look for merge conflicts in our open pull requests on that branch (`feedback`).
- `pull_request` opened/closed/merged: the pull request's state on its goal.
- `check_run` / `workflow_run` failed: on the default branch, the healing signal
  (`ci_failures`, `agentcom.evt.github.ci_failed`); on one of our pull requests, a feedback
  round with the failing job's log tail.
- `pull_request_review` asking for changes: a feedback round with its comments.
- `issues` labelled with `AGENTCOM_HUB_GITHUB_GOAL_LABEL`: a goal (source `github`).
Each returns (outcome, reason); what it did is appended to `Delivery.done`.
"""

from typing import Any

from sqlalchemy import select

from agentcom_common import clock, outbox, subjects
from agentcom_common.contracts.alert import Severity
from agentcom_common.contracts.github import CiFailed
from agentcom_common.contracts.health import IssueCategory
from agentcom_common.contracts.hub import SubmitGoal
from agentcom_hubfsm.goals import ops as goal_ops
from agentcom_hubfsm.health import reports
from agentcom_hubfsm.repocache import RepoUnavailableError
from agentcom_hubfsm.tables import goals
from agentcom_hubfsm.webhooks import feedback, store
from agentcom_hubfsm.webhooks.github import FAILED_CONCLUSIONS, GitHubReadError
from agentcom_hubfsm.webhooks.hooks import Hooks
from agentcom_hubfsm.webhooks.payload import dig, repo_urls as payload_urls

Answer = feedback.Answer
ACTOR = "github"


async def handle(h: Hooks, d: store.Delivery, payload: dict[str, Any]) -> Answer:
    repo = d.repo
    if repo is None:
        return "ignored", f"{d.event} names no repository"
    if d.event == "push":
        return await _push(h, d, repo, payload)
    if d.event == "pull_request":
        return await feedback.pull_request(h, d, repo, payload)
    if d.event in ("check_run", "workflow_run"):
        return await _check(h, d, repo, payload)
    if d.event == "pull_request_review":
        return await feedback.review(h, d, repo, payload)
    if d.event == "issues":
        return await _issue(h, d, repo, payload)
    if d.event == "pull_request_review_comment":
        return "ignored", "a review comment is acted on with its review (pull_request_review)"
    return "ignored", f"the hub does not act on {d.event} events"


async def _push(h: Hooks, d: store.Delivery, repo: str, payload: dict[str, Any]) -> Answer:
    default = dig(payload, "repository", "default_branch")
    ref = str(payload.get("ref", ""))
    if ref != f"refs/heads/{default}":
        note = await feedback.pushed(h, repo, ref.removeprefix("refs/heads/"))
        return "ignored", f"push to {ref}, not the default branch {default}" + note
    async with h.engine.connect() as conn:
        used = (
            await conn.execute(select(goals.c.repo).where(goals.c.repo.in_(payload_urls(payload))))
        ).all()
    for url in sorted({r.repo for r in used}):
        try:
            await h.cache.snapshot(url)
            d.done.append(f"refreshed the mirror of {url}")
        except RepoUnavailableError as exc:
            d.done.append(f"could not refresh the mirror of {url}: {exc.detail}")
    if not used:
        d.done.append("no goal names this repo: no mirror to refresh")
    h.brain_wake.set()
    d.done.append("woke the brain")
    await feedback.conflicts(h, d, repo, str(default), str(payload.get("after", "")))
    return "acted", f"push to the default branch {default}"


async def _check(h: Hooks, d: store.Delivery, repo: str, payload: dict[str, Any]) -> Answer:
    run = payload.get(d.event or "")
    conclusion = dig(run, "conclusion")
    if d.action == "completed" and conclusion == "success":
        return await _passed(h, d, repo, run, payload)
    if d.action != "completed" or conclusion not in FAILED_CONCLUSIONS:
        return "ignored", f"{d.event} {d.action} with conclusion {conclusion}: nothing failed"
    if d.event == "check_run":
        branch = dig(run, "check_suite", "head_branch")
        jobs = [(int(dig(run, "id") or 0), str(dig(run, "name")))]
    else:
        branch = dig(run, "head_branch")
        try:
            jobs = await h.github.failed_jobs(repo, int(dig(run, "id") or 0))
        except GitHubReadError as exc:
            jobs = []
            d.done.append(f"could not list the run's jobs: {exc}")
    failed = feedback.Failure(
        name=str(dig(run, "name")),
        sha=str(dig(run, "head_sha")),
        url=str(dig(run, "html_url")),
        jobs=jobs,
    )
    if branch == dig(payload, "repository", "default_branch"):
        return await _default_failed(h, d, repo, str(branch), failed, await _url_of(h, payload))
    return await feedback.check_failed(h, d, repo, str(branch), failed)


async def _url_of(h: Hooks, payload: dict[str, Any]) -> str:
    """The URL agents know the repository by: a goal's, else GitHub's `clone_url`."""
    async with h.engine.connect() as conn:
        used = (
            await conn.execute(
                select(goals.c.repo).where(goals.c.repo.in_(payload_urls(payload))).limit(1)
            )
        ).first()
    return used.repo if used else str(dig(payload, "repository", "clone_url") or "")


async def _default_failed(
    h: Hooks,
    d: store.Delivery,
    repo: str,
    branch: str,
    failed: "feedback.Failure",
    url: str,
) -> Answer:
    """The healing signal: recorded, published, then handed to healing (see docs/hub.md)."""
    tail = await feedback.log_tails(h, repo, failed.jobs)
    event = CiFailed(
        repo=repo,
        branch=branch,
        sha=failed.sha,
        check=failed.name,
        url=failed.url,
        log_tail=tail,
        at=clock.now(),
    )
    async with h.engine.begin() as conn:
        new = await store.add_ci_failure(conn, event.model_dump(exclude={"at", "schema_version"}))
        if new:
            await outbox.add(conn, h.outbox, subjects.GITHUB_CI_FAILED, event)
            # a critical health issue: the brain's healing rule acts on it (docs/hub.md)
            await reports.report_issue(
                conn,
                key=_issue_key(repo, branch, failed.name),
                source="github",
                severity=Severity.CRITICAL,
                category=IssueCategory.CI_FAILING,
                summary=f"{branch} of {repo} fails CI ({failed.name} at {failed.sha[:12]})",
                # healing's diagnostic task reads these: `repo` as agents know it, `job`
                evidence=event.model_dump(mode="json", exclude={"schema_version"})
                | {"repo": url, "github": repo, "job": failed.name},
            )
    if not new:
        return "ignored", f"{failed.name} on {failed.sha[:12]} was recorded before"
    d.done.append(f"recorded CI failing on {branch}: {failed.name} at {failed.sha[:12]}")
    d.done.append("published agentcom.evt.github.ci_failed (the healing signal)")
    d.done.append("reported the critical health issue ci_failing")
    h.brain_wake.set()
    return "acted", f"{failed.name} failed on the default branch {branch}"


def _issue_key(repo: str, branch: str, check: str) -> str:
    return f"ci_failing:{repo}:{branch}:{check}"[:500]


async def _passed(
    h: Hooks, d: store.Delivery, repo: str, run: Any, payload: dict[str, Any]
) -> Answer:
    """A check that passes on the default branch clears the issue its failure reported."""
    branch = dig(run, "check_suite", "head_branch") if d.event == "check_run" else None
    branch = branch or dig(run, "head_branch")
    if branch != dig(payload, "repository", "default_branch"):
        return "ignored", f"{d.event} passed on {branch}"
    name = str(dig(run, "name"))
    async with h.engine.begin() as conn:
        cleared = await reports.clear_issue(conn, _issue_key(repo, str(branch), name))
    if not cleared:
        return "ignored", f"{name} passed on {branch}; no failure of it was reported"
    d.done.append(f"cleared the ci_failing issue of {name} on {branch}")
    return "acted", f"{name} passes again on the default branch {branch}"


async def _issue(h: Hooks, d: store.Delivery, repo: str, payload: dict[str, Any]) -> Answer:
    label = dig(payload, "label", "name")
    wanted = h.settings.hub_github_goal_label
    if d.action != "labeled" or label != wanted:
        return "ignored", f"issues {d.action} ({label}): only the label {wanted!r} makes a goal"
    number = dig(payload, "issue", "number")
    title = str(dig(payload, "issue", "title") or f"issue {number}")[:200]
    link = str(dig(payload, "issue", "html_url") or "")[:500] or None
    urls = [u for u in payload_urls(payload) if u.endswith(".git")] or [repo]
    body = str(dig(payload, "issue", "body") or "")
    goal = SubmitGoal(
        title=title,
        description=f"{body}\n\nFrom GitHub issue {repo}#{number}: {link}"[:20_000],
        success_criteria=[f"What issue #{number} ({title}) asks for is done"[:1000]],
        repo=str(dig(payload, "repository", "clone_url") or urls[0])[:500],
        client_key=f"github:{repo}#{number}"[:200],
        source="github",
        link=link,
    )
    made, created = await goal_ops.submit(h.goals, goal, ACTOR)
    if not created:
        return "ignored", f"issue #{number} already became {made.id}"
    d.done.append(f"made goal {made.id} from issue #{number}")
    return "acted", f"issue #{number} was labelled {wanted!r}"
