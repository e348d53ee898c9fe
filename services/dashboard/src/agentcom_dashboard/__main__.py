"""`python -m agentcom_dashboard`: run the dashboard service until SIGTERM."""

from agentcom_common import service
from agentcom_dashboard.app import SPEC, create_app
from agentcom_dashboard.settings import DashboardSettings


def main() -> None:
    service.run(SPEC, DashboardSettings(), create_app)


if __name__ == "__main__":
    main()
