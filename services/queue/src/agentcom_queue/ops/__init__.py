"""Queue use cases, one transaction each: the change, its history rows and its events commit
together (house style 2.3). HTTP routes and NATS endpoints both call these.

One module per job: `submits`, `claims`, `outcomes` (an agent's report, a hand-back, the retry
or dead letter after a failure), `manual` (a person's cancel, retry, accept), `dependents`,
`reads`, `registry` (repos); `core` holds what they share. Callers use this package's names.
"""

from agentcom_queue.ops.claims import claim, claim_for_agents, claim_many
from agentcom_queue.ops.core import EVENT_OF, Queue, event_subject, view
from agentcom_queue.ops.dependents import sweep_dependencies
from agentcom_queue.ops.manual import accept, cancel, retry_dead_letter
from agentcom_queue.ops.outcomes import report, report_many, requeue
from agentcom_queue.ops.reads import get, history, page, stats
from agentcom_queue.ops.registry import add_repo, list_repos, pause_repo, remove_repo, reorder_repos
from agentcom_queue.ops.submits import Own, SubmitGroup, submit, submit_many

__all__ = [
    "EVENT_OF",
    "Own",
    "Queue",
    "SubmitGroup",
    "accept",
    "add_repo",
    "cancel",
    "claim",
    "claim_for_agents",
    "claim_many",
    "event_subject",
    "get",
    "history",
    "list_repos",
    "page",
    "pause_repo",
    "remove_repo",
    "reorder_repos",
    "report",
    "report_many",
    "requeue",
    "retry_dead_letter",
    "stats",
    "submit",
    "submit_many",
    "sweep_dependencies",
    "view",
]
