"""Deliver a task's work: commit naming the task, push the branch, open a pull request.

Idempotent when re-run: a commit is only made when something changed, the push of the task's
own branch is forced (only this agent writes it), and an open pull request for the branch is
found (GET) before one is created (POST). A repo without a GitHub name is pushed only.
Failures raise `DeliveryError` with what failed and why; the token never appears in it.
The workspace's git dir is guarded first (`workspaces.guard`: no hook, none of the task's
config), and the push names the configured URL; only the push gets the credentials (`auth`).

Size: one job, getting a task's work to its remote and its pull request; git (commit, push,
catch-up, side branch) and the GitHub calls (pull request, merge, CI state) are its two halves
and share the workspace guard, the credential rules and `DeliveryError`.
"""

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httpx

from agentcom_common.contracts.delivery import CiState, DeliveryReport, MergeConflict
from agentcom_common.contracts.task import TaskView
from agentcom_sidecar import processes
from agentcom_sidecar.workspaces import GitError, Workspace, argv, git, guard


class DeliveryError(Exception):
    pass


async def commit_and_push(
    ws: Workspace,
    task: TaskView,
    agent_id: str,
    env: Mapping[str, str],
    auth: Mapping[str, str],
    timeout: float,
) -> tuple[str | None, bool]:
    """Commit any change (message names the task), push to the workspace's URL if the branch
    is ahead of its base; `auth` is added to `env` for the push alone."""
    head = await commit(ws, task, agent_id, env, timeout)
    if head is None:
        return None, False
    await push(ws, env, auth, timeout)
    return head, True


def _identity(env: Mapping[str, str], agent_id: str) -> dict[str, str]:
    return dict(env) | {
        "GIT_AUTHOR_NAME": f"agentcom {agent_id}",
        "GIT_AUTHOR_EMAIL": f"{agent_id}@agentcom.invalid",
        "GIT_COMMITTER_NAME": f"agentcom {agent_id}",
        "GIT_COMMITTER_EMAIL": f"{agent_id}@agentcom.invalid",
    }


async def commit(
    ws: Workspace, task: TaskView, agent_id: str, env: Mapping[str, str], timeout: float
) -> str | None:
    """Commit any change (message names the task); HEAD if the branch is ahead of its base,
    else None (nothing to deliver). Local only: nothing leaves the machine here."""
    genv = _identity(env, agent_id)
    try:
        await guard(ws.path, genv, timeout)
        await git(["add", "-A"], ws.path, genv, timeout, "stage the changes")
        if (await git(["status", "--porcelain"], ws.path, genv, timeout, "check changes")).strip():
            lines = task.description.strip().splitlines()
            title = lines[0][:60] if lines else ""
            message = f"{task.id}: {title}\n\nTask {task.id} done by agent {agent_id}."
            await git(["commit", "--quiet", "-m", message], ws.path, genv, timeout, "commit")
        since = ws.branch if ws.continues else ws.base
        ahead = await git(
            ["rev-list", "--count", f"origin/{since}..HEAD"],
            ws.path,
            genv,
            timeout,
            "count commits",
        )
        if int(ahead.strip() or 0) == 0:
            return None
        return (await git(["rev-parse", "HEAD"], ws.path, genv, timeout, "read HEAD")).strip()
    except GitError as exc:
        raise DeliveryError(str(exc)) from None


async def push(
    ws: Workspace, env: Mapping[str, str], auth: Mapping[str, str], timeout: float
) -> None:
    """Force-push HEAD to the task's own branch at the workspace's URL; `auth` for it alone.
    A continued branch (`ws.continues`) may hold a person's commits too: it is only ever
    fast-forwarded, never forced."""
    force = [] if ws.continues else ["--force"]
    try:
        await git(
            ["push", *force, "--quiet", "--", ws.url, f"HEAD:refs/heads/{ws.branch}"],
            ws.path,
            dict(env) | dict(auth),
            timeout,
            f"push {ws.branch}",
        )
    except GitError as exc:
        raise DeliveryError(str(exc)) from None


async def conflict(
    ws: Workspace, env: Mapping[str, str], auth: Mapping[str, str], timeout: float
) -> MergeConflict | None:
    """Whether HEAD still merges into its base as the remote has it now: the base is fetched
    afresh (another task of the goal, or a person, may have moved it while this one ran) and
    `git merge-tree` merges the two in memory, touching neither the checkout nor the index.
    The conflicting files, or None when it merges."""
    await _fetch(ws, ws.base, env, auth, timeout)
    files = await _conflicting(ws, ws.base, env, timeout)
    return None if files is None else MergeConflict(base=ws.base, files=files)


async def catch_up(
    ws: Workspace,
    agent_id: str,
    env: Mapping[str, str],
    auth: Mapping[str, str],
    timeout: float,
) -> MergeConflict | None:
    """A continued branch's fast-forward push was refused: someone pushed to the branch while
    the task ran. Fetch it and, if HEAD merges with it, merge it in (a merge commit: the push
    is a fast-forward again) and return None; if not, the conflicting files, against the
    branch (nothing is changed then)."""
    await _fetch(ws, ws.branch, env, auth, timeout)
    files = await _conflicting(ws, ws.branch, env, timeout)
    if files is not None:
        return MergeConflict(base=ws.branch, files=files)
    try:
        await git(
            ["merge", "--quiet", "--no-edit", f"origin/{ws.branch}"],
            ws.path,
            _identity(env, agent_id),
            timeout,
            f"merge the new commits of {ws.branch}",
        )
    except GitError as exc:
        raise DeliveryError(str(exc)) from None
    return None


def side_branch(ws: Workspace, task_id: str) -> str:
    """Where a continued branch's work goes when the branch moved under it and conflicts: a
    branch of its own, named after the branch and the task (only this task writes it)."""
    return f"{ws.branch}--{task_id}"[:250]


async def push_side(
    ws: Workspace, branch: str, env: Mapping[str, str], auth: Mapping[str, str], timeout: float
) -> None:
    """Force-push HEAD to `branch` (`side_branch`: this task's own), `auth` for it alone."""
    try:
        await git(
            ["push", "--force", "--quiet", "--", ws.url, f"HEAD:refs/heads/{branch}"],
            ws.path,
            dict(env) | dict(auth),
            timeout,
            f"push {branch}",
        )
    except GitError as exc:
        raise DeliveryError(str(exc)) from None


async def _fetch(
    ws: Workspace, branch: str, env: Mapping[str, str], auth: Mapping[str, str], timeout: float
) -> None:
    try:
        await git(
            [
                "fetch",
                "--quiet",
                "--",
                ws.url,
                f"+refs/heads/{branch}:refs/remotes/origin/{branch}",
            ],
            ws.path,
            dict(env) | dict(auth),
            timeout,
            f"fetch {branch}",
        )
    except GitError as exc:
        raise DeliveryError(str(exc)) from None


async def _conflicting(
    ws: Workspace, branch: str, env: Mapping[str, str], timeout: float
) -> list[str] | None:
    """The files HEAD conflicts in with `origin/<branch>` (in memory: `git merge-tree`), or
    None when the two merge."""
    merged = await processes.run(
        argv(
            [
                "merge-tree",
                "--write-tree",
                "--name-only",
                "--no-messages",
                f"origin/{branch}",
                "HEAD",
            ]
        ),
        ws.path,
        timeout=timeout,
        env=env,
        grace=1.0,
    )
    if merged.timed_out or merged.exit_code not in (0, 1):
        raise DeliveryError(
            f"check merging into {branch}: git merge-tree failed: {merged.tail[-800:]}"
        )
    if merged.exit_code == 0:
        return None
    # the first line is the merged tree's id; the conflicting files follow, one a line
    files = list(dict.fromkeys(f for f in merged.tail.splitlines()[1:] if f.strip()))
    return files[:200]


def pr_body(
    task: TaskView,
    report: Mapping[str, Any],
    agent_id: str,
    delivered: DeliveryReport | None = None,
) -> str:
    listed: object = report.get("checks")
    checks = [_object(c) for c in cast("list[object]", listed or [])]
    lines = [
        f"## Task {task.id}",
        "",
        task.description,
        "",
        f"Agent: `{agent_id}`",
        "",
        "## Verification",
        "",
        f"Status: **{report.get('status', 'not_verified')}**",
    ]
    lines += [
        f"- {'pass' if c.get('passed') else 'FAIL'}: {c.get('check')} {c.get('target')}"
        for c in checks
    ]
    risk = delivered.risk if delivered else None
    if risk is not None or report.get("status") != "pass":
        lines += ["", "## Risk", ""]
    if delivered is not None and risk is not None:
        lines += [f"Tier: **{risk.tier}**", "", *(f"- {why}" for why in risk.reasons), ""]
        lines += _evidence(delivered)
    if report.get("status") != "pass":
        lines += ["Not fully verified: review before merging."]
    return "\n".join(lines).rstrip() + "\n"


def _evidence(delivered: DeliveryReport) -> list[str]:
    """The evidence the tier was judged on: the diff's size and the second model's review."""
    lines = ["### Evidence", ""]
    if (diff := delivered.diff) is not None:
        lines.append(
            f"- diff: {diff.files_changed} files, +{diff.lines_added} -{diff.lines_removed}"
        )
    review = delivered.review
    if review is None or review.verdict is None:
        lines.append(f"- review: none ({review.note if review else 'not asked'})")
    else:
        writer = f", the change by {review.writer}" if review.writer else ""
        lines.append(f"- review by `{review.model}`{writer}: **{review.verdict}**")
        lines += [f"  - {c}" for c in review.comments]
    if delivered.cap is not None and delivered.cap != "merge":
        lines.append(f"- the goal's autonomy level allows at most: {delivered.cap}")
    return [*lines, ""]


@dataclass(frozen=True, slots=True)
class Pull:
    url: str
    number: int
    draft: bool


def _client(api: str, token: str | None, timeout: float) -> httpx.AsyncClient:
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.AsyncClient(base_url=api, headers=headers, timeout=timeout)


async def open_pull_request(
    api: str,
    token: str | None,
    repo: str,
    ws: Workspace,
    title: str,
    body: str,
    timeout: float,
    draft: bool = False,
) -> Pull:
    """Find the open PR for the branch or create it (a draft if `draft`); an open one found is
    left as it is."""
    owner = repo.split("/")[0]
    async with _client(api, token, timeout) as client:
        try:
            found = await client.get(
                f"/repos/{repo}/pulls", params={"head": f"{owner}:{ws.branch}", "state": "open"}
            )
            _raise_for(found, "list pull requests")
            existing: list[dict[str, Any]] = found.json()
            if existing:
                return _pull(existing[0])
            made = await client.post(
                f"/repos/{repo}/pulls",
                json={
                    "title": title,
                    "head": ws.branch,
                    "base": ws.base,
                    "body": body,
                    "draft": draft,
                },
            )
            _raise_for(made, "create the pull request")
            return _pull(made.json())
        except httpx.HTTPError as exc:
            raise DeliveryError(f"GitHub API at {api} unreachable: {type(exc).__name__}") from None
        except (ValueError, LookupError, TypeError):  # a 2xx that is not GitHub's pulls JSON
            raise DeliveryError(
                f"GitHub API at {api} answered without a pull request's html_url"
            ) from None


def _pull(data: dict[str, Any]) -> Pull:
    return Pull(str(data["html_url"]), int(data["number"]), bool(data.get("draft", False)))


async def merge_pull_request(
    api: str, token: str | None, repo: str, number: int, head: str, timeout: float
) -> str | None:
    """Squash-merge the pull request at exactly `head` (GitHub refuses if the branch moved).
    None once merged; else why not, and the pull request stays open for a person."""
    async with _client(api, token, timeout) as client:
        try:
            said = await client.put(
                f"/repos/{repo}/pulls/{number}/merge", json={"merge_method": "squash", "sha": head}
            )
        except httpx.HTTPError as exc:
            return f"GitHub API at {api} unreachable: {type(exc).__name__}"
    try:
        _raise_for(said, "merge the pull request")
    except DeliveryError as exc:
        return str(exc)
    return None


# check-run conclusions that mean the change is not green (GitHub's list); `neutral` and
# `skipped` pass, as GitHub's own merge protection takes them
_RED_CONCLUSIONS = frozenset(
    {"failure", "cancelled", "timed_out", "action_required", "startup_failure", "stale"}
)


async def ci_state(
    api: str, token: str | None, repo: str, sha: str, timeout: float
) -> tuple[CiState, str]:
    """The checks of commit `sha` on GitHub (check runs and commit statuses): green when every
    one finished well, red when one failed (named), pending while one runs or none has
    started yet (a CI that has not picked the commit up looks the same as no CI)."""
    async with _client(api, token, timeout) as client:
        try:
            runs = await client.get(f"/repos/{repo}/commits/{sha}/check-runs")
            _raise_for(runs, "read the check runs")
            status = await client.get(f"/repos/{repo}/commits/{sha}/status")
            _raise_for(status, "read the commit status")
            checks: list[dict[str, Any]] = runs.json()["check_runs"]
            combined: dict[str, Any] = status.json()
        except httpx.HTTPError as exc:
            return "pending", f"GitHub API at {api} unreachable: {type(exc).__name__}"
        except DeliveryError as exc:
            return "pending", str(exc)
        except (ValueError, LookupError, TypeError):
            return "pending", "GitHub's check runs or status are not in GitHub's shape"
    statuses: list[dict[str, Any]] = combined.get("statuses") or []
    red = [str(c.get("name")) for c in checks if c.get("conclusion") in _RED_CONCLUSIONS]
    red += [str(s.get("context")) for s in statuses if s.get("state") in ("failure", "error")]
    if red:
        return "red", f"CI failed: {_names(red)}"
    running = [str(c.get("name")) for c in checks if c.get("status") != "completed"]
    running += [str(s.get("context")) for s in statuses if s.get("state") == "pending"]
    if running:
        return "pending", f"CI still running: {_names(running)}"
    if not checks and not statuses:
        return "pending", "no CI check has started on the commit yet"
    return "green", f"CI green: {len(checks) + len(statuses)} checks passed"


async def wait_for_ci(
    api: str, token: str | None, repo: str, sha: str, timeout: float, wait: float, every: float
) -> tuple[CiState, str]:
    """`ci_state` until it is green or red, or `wait` seconds passed (then pending)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        state, note = await ci_state(api, token, repo, sha, timeout)
        if state != "pending" or loop.time() + every > deadline:
            return state, note if state != "pending" else f"{note} (waited {wait:g} s: ci_wait)"
        await asyncio.sleep(every)  # the poll interval (`ci_poll_interval`), a setting


def _names(names: Sequence[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _raise_for(response: httpx.Response, what: str) -> None:
    if response.status_code < 400:
        return
    try:
        message = str(json.loads(response.text).get("message", ""))[:300]
    except (ValueError, AttributeError):
        message = response.text[:300]
    raise DeliveryError(f"cannot {what}: GitHub answered {response.status_code} {message}")


def _object(value: object) -> dict[str, Any]:
    """`value` if it is a JSON object (a check in a verification report), else {}."""
    return cast("dict[str, Any]", value) if isinstance(value, dict) else {}
