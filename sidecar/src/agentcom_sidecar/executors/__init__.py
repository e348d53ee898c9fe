"""Executors: the part of the sidecar that does a task's work in its workspace.

`base` holds the interface every executor implements (shell here, the LLM agent loop in
`agentcom_sidecar.agentic`); the verification loop wraps whichever one the task chooses.
"""
