"""Why a queued task is not being taken: `agentcom.rpc.scheduler.explain`.

The queue asks when someone reads one queued task (`GET /api/tasks/{id}`): only the scheduler
knows the agents, their state, capabilities and repos, and what each refused for good, and the
queue never reads the scheduler's tables. Asking on read costs one request per task view and
nothing on the claim path; the answer is as fresh as the agents' rows.
"""

from collections.abc import Sequence

from agentcom_common.contracts.agent import AgentState
from agentcom_common.contracts.task import ExplainWait, WaitReason
from agentcom_common.repos import repo_key
from agentcom_scheduler import ops, store


async def why_waiting(s: ops.Scheduler, ask: ExplainWait) -> WaitReason:
    """The agents that could take the task, or why none can (one clause per online agent)."""
    async with s.engine.connect() as conn:
        rows = await store.all_agents(conn)
        refused = await store.refusals_of_task(conn, ask.task_id)
    if not rows:
        return WaitReason(reason="no agent is registered (agentcom agent add)")
    online = [r for r in rows if r.state != AgentState.OFFLINE.value]
    if not online:
        return WaitReason(reason=f"no agent is online ({_names(rows)} offline)")
    key = repo_key(ask.repo) if ask.repo else None
    able: list[str] = []
    idle = False
    why: list[str] = []
    for row in online:
        if missing := sorted(set(ask.needed_capabilities) - set(row.capabilities)):
            why.append(f"{row.id} lacks capability {', '.join(missing)}")
        elif key is not None and row.repos and key not in row.repos:
            why.append(f"{row.id} does not serve repo {key} (it serves {', '.join(row.repos)})")
        elif row.id in refused:
            why.append(f"{row.id} cannot run it: {refused[row.id]}")
        else:
            able.append(row.id)
            idle = idle or row.state == AgentState.IDLE.value
    if not able:
        return WaitReason(reason=f"no online agent can take it: {'; '.join(why)}")
    if idle:
        return WaitReason(reason=None, able=able)
    return WaitReason(reason=f"every agent that can take it is busy ({', '.join(able)})", able=able)


def _names(rows: Sequence[store.AgentRow]) -> str:
    names = [r.id for r in rows]
    return ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
