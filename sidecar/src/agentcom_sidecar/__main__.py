"""`python -m agentcom_sidecar run --config F`: what the supervisors start."""

from agentcom_sidecar.cli import app

if __name__ == "__main__":
    app()
