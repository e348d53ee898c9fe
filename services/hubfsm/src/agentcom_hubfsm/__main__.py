"""`python -m agentcom_hubfsm`: run the hubfsm service until SIGTERM."""

from agentcom_common import service
from agentcom_common.settings import CommonSettings
from agentcom_hubfsm.app import SPEC


def main() -> None:
    service.run(SPEC, CommonSettings())


if __name__ == "__main__":
    main()
