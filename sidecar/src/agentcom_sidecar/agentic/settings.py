"""Settings of the agent loop: limits, sandbox bounds and where the gateway is.

Environment names carry the prefix `AGENTCOM_` like every other setting. The sidecar may also
build `AgenticSettings(...)` from its config file (gateway URL, token) and pass it to `build`.
"""

from datetime import timedelta
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentcom_common.settings import Interval

Tier = Literal["trivial", "standard", "complex"]


class AgenticSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AGENTCOM_", env_file=".env", extra="ignore", frozen=True
    )

    agentic_gateway_url: str = Field(
        default="http://127.0.0.1:8103",
        description="Base URL of the llm-registry chat gateway (Ollama protocol at /api/chat).",
    )
    agentic_token: SecretStr | None = Field(
        default=None, description="The agent's bearer token for the gateway; never logged."
    )
    agentic_ollama_model: str | None = Field(
        default=None,
        description="A model the `ollama` executor always asks for; unset, a task that names "
        "no model (`metadata.model`) is routed by its tier.",
    )
    agentic_claude_model: str | None = Field(
        default=None,
        description="A model the `claude` executor always asks for; unset, a task that names "
        "no model (`metadata.model`) is routed by the complex tier.",
    )
    agentic_max_iterations_trivial: int = Field(
        default=5, ge=1, le=200, description="Model turns allowed for a trivial task."
    )
    agentic_max_iterations_standard: int = Field(
        default=10, ge=1, le=200, description="Model turns allowed for a standard task."
    )
    agentic_max_iterations_complex: int = Field(
        default=20, ge=1, le=200, description="Model turns allowed for a complex task."
    )
    agentic_token_budget: int = Field(
        default=200_000,
        ge=1,
        description="Tokens (in + out) one attempt may use; the loop stops when they are spent.",
    )
    agentic_repeat_limit: int = Field(
        default=3,
        ge=2,
        le=20,
        description="Stop when the model makes the same tool calls this many turns in a row.",
    )
    agentic_max_calls_per_turn: int = Field(
        default=8,
        ge=1,
        le=100,
        description="Tool calls run from one model turn; the rest are answered `too_many_calls`.",
    )
    agentic_max_nudges: int = Field(
        default=2, ge=0, le=10, description="Empty replies answered with a nudge before stopping."
    )
    agentic_chat_timeout: Interval = Field(
        default=timedelta(seconds=120), description="Deadline of one model call."
    )
    agentic_command_timeout: Interval = Field(
        default=timedelta(seconds=30),
        description="Default run_command timeout; the whole process group is killed after it.",
    )
    agentic_command_timeout_max: Interval = Field(
        default=timedelta(seconds=300), description="Largest run_command timeout a model may ask."
    )
    agentic_output_cap: int = Field(
        default=32_768, ge=256, description="Bytes of stdout and of stderr kept per command."
    )
    agentic_output_kill: int = Field(
        default=8_388_608,
        ge=1024,
        description="A command whose output passes this many bytes is killed.",
    )
    agentic_observation_cap: int = Field(
        default=16_384, ge=512, description="Characters of one tool observation sent to the model."
    )
    agentic_cpu_seconds: int = Field(
        default=120, ge=1, description="RLIMIT_CPU of a command (CPU seconds)."
    )
    agentic_memory_bytes: int = Field(
        default=2 * 1024**3, ge=64 * 1024**2, description="RLIMIT_AS of a command (bytes)."
    )
    agentic_file_size_bytes: int = Field(
        default=64 * 1024**2, ge=1024, description="RLIMIT_FSIZE of a command (bytes)."
    )
    agentic_file_max_bytes: int = Field(
        default=1024**2, ge=1024, description="Largest file read_file returns or write_file writes."
    )
    agentic_list_max_entries: int = Field(
        default=500, ge=1, description="Entries list_directory returns at most."
    )
    agentic_search_max_files: int = Field(
        default=2000, ge=1, description="Files search_files reads at most."
    )
    agentic_search_max_matches: int = Field(
        default=200, ge=1, description="Matches search_files returns at most."
    )
    agentic_isolation: Literal["auto", "namespaces", "none"] = Field(
        default="auto",
        description="`namespaces`: required; commands see a read-only system, a writable "
        "workspace and no network (user, mount, pid and net namespaces via `unshare`), and "
        "where the kernel cannot make them the sidecar refuses LLM tasks "
        "(`isolation_unavailable`); `auto` uses them when the kernel allows and else runs "
        "commands unisolated (the heartbeat and status say `none`); `none` keeps only limits, "
        "timeout and scrubbed environment.",
    )
    agentic_allow_shell: bool = Field(
        default=True,
        description="Let run_command take a shell string (run by /bin/sh -c inside the sandbox); "
        "when false only argv lists run.",
    )

    def max_iterations(self, tier: str | None) -> int:
        """The iteration limit of a complexity tier; unknown or missing tiers count as standard."""
        if tier == "trivial":
            return self.agentic_max_iterations_trivial
        if tier == "complex":
            return self.agentic_max_iterations_complex
        return self.agentic_max_iterations_standard
