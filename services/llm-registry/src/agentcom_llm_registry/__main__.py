"""`python -m agentcom_llm_registry`: run the llm-registry service until SIGTERM."""

from agentcom_common import service
from agentcom_llm_registry.app import SPEC, create_app
from agentcom_llm_registry.settings import LlmSettings


def main() -> None:
    service.run(SPEC, LlmSettings(), create_app)


if __name__ == "__main__":
    main()
