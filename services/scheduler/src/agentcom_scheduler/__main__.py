"""`python -m agentcom_scheduler`: run the scheduler service until SIGTERM."""

from agentcom_common import service
from agentcom_common.settings import CommonSettings
from agentcom_scheduler.app import SPEC


def main() -> None:
    service.run(SPEC, CommonSettings())


if __name__ == "__main__":
    main()
