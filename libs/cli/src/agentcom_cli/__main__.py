"""`python -m agentcom_cli` is the `agentcom` command."""

from agentcom_cli.main import app

if __name__ == "__main__":
    app()
