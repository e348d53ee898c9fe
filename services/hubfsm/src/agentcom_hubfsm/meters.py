"""The hub's instruments: the hub's state, goals by state and goal verification results, all
sampled from Postgres every `metrics_sample_interval` (the brain row and the goals tables are
the truth, whichever replica moved them). Made at import like a logger."""

from agentcom_common import metering
from agentcom_common.contracts.hub import GoalState, HubState
from agentcom_common.service import Resources
from agentcom_hubfsm.brain import store as brain_store
from agentcom_hubfsm.goals import store as goal_store

_m = metering.meter("agentcom.hubfsm")
hub_state = metering.Sampled(
    _m, "agentcom.hub.state", "", "1 for the state the hub is in now, 0 for the others."
)
goals = metering.Sampled(_m, "agentcom.goals", "{goal}", "Goals by state.")
verifications = metering.Sampled(
    _m,
    "agentcom.goal.verifications",
    "{verification}",
    "Goal verification rounds recorded, by result (passed, failed).",
    total=True,
)


def sampler(res: Resources) -> metering.Sampler:
    async def sample() -> None:
        async with res.engine.connect() as conn:
            row = await brain_store.load(conn)
            by_state = await goal_store.count_by_state(conn)
            rounds = await goal_store.count_verifications(conn)
        hub_state.set({(("state", s.value),): float(row.state == s.value) for s in HubState})
        goals.set({(("state", s.value),): by_state.get(s.value, 0) for s in GoalState})
        verifications.set(
            {
                (("result", "passed"),): rounds.get(True, 0),
                (("result", "failed"),): rounds.get(False, 0),
            }
        )

    return sample
