"""What the hub reads from a goal task's delivery once the task ends: a merge conflict.

A sidecar checks, after pushing a task's branch, whether it still merges into its base as the
remote has it then (`DeliveryReport.conflict`: the base moved while the task ran). The hub
turns that into a critical `merge_conflict` health issue keyed by the repo and branch, with the
conflicting files as evidence: the brain's healing opens an urgent task for an agent to resolve
them (`healing.remedies.diagnostic_task`). For a pull request the sidecar opened, the conflict is
also a round of the pull-request feedback loop (`webhooks.feedback.delivered_conflict`), so it
counts towards the goal's escalation like a conflict GitHub reports.

A follow-up on a pull request's branch whose push was refused because someone pushed to the
branch meanwhile comes the same way: the sidecar merged the branch's new commits in when it
could; when they conflict it pushed the work to a branch of its own (`result.branch`, with
`result.refused_by` the pull request's branch) and reports the conflict against the pull
request's branch (`conflict.base`). The issue is then that side branch's, and the round asks
to merge it into the pull request's branch.

The report lives for `hub_healing_window`: the urgent task is opened within it, and a later
delivery of the branch that still conflicts reports it again; one that merges clears it.
"""

import logging
import re
from typing import Final

from pydantic import ValidationError

from agentcom_common.contracts.alert import Severity
from agentcom_common.contracts.delivery import DeliveryReport
from agentcom_common.contracts.health import IssueCategory
from agentcom_common.contracts.task import TaskState
from agentcom_common.errors import AgentcomError
from agentcom_hubfsm.health import reports
from agentcom_hubfsm.webhooks import feedback
from agentcom_hubfsm.webhooks.hooks import Hooks

log = logging.getLogger(__name__)
ENDED: Final = frozenset({TaskState.COMPLETED, TaskState.PARTIAL_PASS, TaskState.FAILED})
PULL_URL: Final = re.compile(r"/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)/pull/([0-9]+)$")


def issue_key(repo: str, branch: str) -> str:
    return f"merge_conflict:{repo}:{branch}"[:500]


async def ended(h: Hooks, goal_id: str, task_id: str) -> None:
    """Read the ended task's delivery and report (or clear) its branch's merge conflict."""
    try:
        task = next((t for t in await h.queue.tasks_of(goal_id) if t.id == task_id), None)
    except AgentcomError as exc:  # the queue away: the conflict is missed, say so
        log.warning("delivery.unread", extra={"task_id": task_id, "error": exc.detail})
        return
    raw = (task.result or {}).get("delivery") if task is not None else None
    if task is None or not isinstance(raw, dict):
        return
    branch, repo = (task.result or {}).get("branch"), task.repo_url or task.repo
    try:
        report = DeliveryReport.model_validate(raw)
    except ValidationError:
        return  # not a delivery this hub can read (an older sidecar): nothing to report
    if not isinstance(branch, str) or repo is None:
        return
    key = issue_key(repo, branch)
    if report.conflict is None:
        async with h.engine.begin() as conn:
            await reports.clear_issue(conn, key)
        return
    files, base = report.conflict.files, report.conflict.base
    async with h.engine.begin() as conn:
        await reports.report_issue(
            conn,
            key=key,
            source="sidecar",
            severity=Severity.CRITICAL,
            category=IssueCategory.MERGE_CONFLICT,
            summary=f"{branch} of {repo} conflicts with {base} ({len(files)} file(s))",
            # the diagnostic task reads repo, branch, base and files
            evidence={
                "repo": repo,
                "branch": branch,
                "base": base,
                "files": files,
                "task_id": task.id,
                "goal_id": goal_id,
                "pull_request": report.pull_request,
            },
            ttl=h.settings.hub_healing_window,
        )
    h.brain_wake.set()
    log.warning("delivery.merge_conflict", extra={"task_id": task.id, "files": files[:20]})
    named = PULL_URL.search(report.pull_request or "")
    if named is not None:
        # a conflict against the branch itself: the follow-up's push was refused and its
        # work is on the branch it names (`refused_by` is the pull request's branch)
        refused = (task.result or {}).get("refused_by")
        kept_on = branch if isinstance(refused, str) and refused == base else None
        said = await feedback.delivered_conflict(
            h, f"{named[1]}/{named[2]}", int(named[3]), files, kept_on
        )
        log.info("delivery.pr_round", extra={"task_id": task.id, "said": said[:500]})
