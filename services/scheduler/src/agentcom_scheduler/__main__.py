"""`python -m agentcom_scheduler`: run the scheduler service until SIGTERM."""

from agentcom_common import service
from agentcom_scheduler.app import SPEC, create_app
from agentcom_scheduler.settings import SchedulerSettings


def main() -> None:
    service.run(SPEC, SchedulerSettings(), create_app)


if __name__ == "__main__":
    main()
