"""`python -m agentcom_queue`: run the queue service until SIGTERM."""

from agentcom_common import service
from agentcom_queue.app import SPEC, create_app
from agentcom_queue.settings import QueueSettings


def main() -> None:
    service.run(SPEC, QueueSettings(), create_app)


if __name__ == "__main__":
    main()
