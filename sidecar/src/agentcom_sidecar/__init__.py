"""agentcom-sidecar: one agent's process; its body arrives with the sidecar issue (#6)."""
