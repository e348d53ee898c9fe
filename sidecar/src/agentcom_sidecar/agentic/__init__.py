"""The agent loop: sandboxed tools, a ReAct loop through the llm-registry gateway, executors.

- `tools`: the five tools, defined once as pydantic models, exported as function-calling JSON;
  every call returns an `Observation` (ok, data, error code, truncated, duration). `files` holds
  the file tools' bodies, `search` the search worker that runs as a sandboxed child process.
- `sandbox`: paths resolved inside the workspace; commands run in their own process group with a
  timeout, output caps (`output`), resource limits, a scrubbed environment and (where the kernel
  allows) namespaces that make everything but the workspace read-only and cut the network.
- `parser`: native `tool_calls`, JSON in content, XML-style calls.
- `gateway`: the Ollama `/api/chat` protocol to the gateway with the agent's bearer token.
- `prompt`: the system prompt and first messages; `loop`: the ReAct loop and its stop rules.
- `executors`: `ollama` and `claude`, `build(name, settings)` for the sidecar's registry (the
  sidecar's `attempts` turns a stopped loop's result into `partial_pass` or `failed`). The scripted model server the tests use lives in
  the tests (`tests/servers/fake_ollama.py`), not here.
"""
