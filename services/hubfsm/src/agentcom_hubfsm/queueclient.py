"""The hub's calls to the queue over NATS RPC (`micro.call`; the hub never touches the queue's
tables): submit a goal's tasks, read them back by goal, cancel them."""

from dataclasses import dataclass

from nats.aio.client import Client

from agentcom_common import micro
from agentcom_common.contracts.task import (
    CancelTask,
    ListTasks,
    SubmitTasks,
    SubmittedTasks,
    TaskList,
    TaskView,
)
from agentcom_common.errors import ConflictError, NotFoundError


@dataclass(frozen=True, slots=True)
class QueueClient:
    nc: Client
    timeout: float = 10.0

    async def submit(self, body: SubmitTasks) -> list[str]:
        """The tasks' ids in order; a `client_key` already used returns its first task."""
        made = await micro.call(
            self.nc, "queue", "submit_batch", body, SubmittedTasks, timeout=self.timeout
        )
        return [task.id for task in made.tasks]

    async def tasks_of(self, goal_id: str) -> list[TaskView]:
        found: list[TaskView] = []
        cursor: str | None = None
        while True:
            page = await micro.call(
                self.nc,
                "queue",
                "list",
                ListTasks(goal_id=goal_id, cursor=cursor, limit=500),
                TaskList,
                timeout=self.timeout,
            )
            found += page.tasks
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    async def cancel(self, task_id: str) -> None:
        """Cancel a task; one gone from the queue or already ended is left as it is (the
        driver reads the tasks' states back afterwards)."""
        try:
            await micro.call(
                self.nc,
                "queue",
                "cancel",
                CancelTask(task_id=task_id),
                TaskView,
                timeout=self.timeout,
            )
        except (NotFoundError, ConflictError):
            return
