"""`python -m agentcom_hubfsm`: run the hubfsm service until SIGTERM."""

from agentcom_common import service
from agentcom_hubfsm.app import SPEC, create_app
from agentcom_hubfsm.settings import HubSettings


def main() -> None:
    service.run(SPEC, HubSettings(), create_app)


if __name__ == "__main__":
    main()
