"""`python -m agentcom_queue`: run the queue service until SIGTERM."""

from agentcom_common import service
from agentcom_common.settings import CommonSettings
from agentcom_queue.app import SPEC


def main() -> None:
    service.run(SPEC, CommonSettings())


if __name__ == "__main__":
    main()
