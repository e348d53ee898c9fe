"""Improvement scans: deterministic scanners over a task's workspace that read the repo's files
and never run its code (`languages` picks them by language, `python` and `ruff` are Python's);
the `scan` executor (`agentcom_sidecar.executors.scan`) returns their findings."""
