"""`python -m agentcom_llm_registry`: run the llm-registry service until SIGTERM."""

from agentcom_common import service
from agentcom_common.settings import CommonSettings
from agentcom_llm_registry.app import SPEC


def main() -> None:
    service.run(SPEC, CommonSettings())


if __name__ == "__main__":
    main()
