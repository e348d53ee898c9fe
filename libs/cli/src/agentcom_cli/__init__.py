"""The `agentcom` command line."""
