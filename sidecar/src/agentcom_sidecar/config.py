"""The sidecar's config file: JSON, mode 0600, written by `agentcom agent add`.

Required keys come from the CLI (agent_id, token, nats_url); everything else has a default.
Durations are seconds (floats), so a test can run every timer at millisecond scale. Secrets
(token, nats_password, github_token) are `SecretStr`: they never print and never reach a child
process. The state dir (journal, status) and the workspaces must not contain each other, the
config file, or the sidecar's own code: a model working in a workspace can never read the token.
"""

import json
import stat
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError

import agentcom_sidecar
from agentcom_common.errors import InvalidError
from agentcom_common.repos import repo_key
from agentcom_common.risk import RiskRules

AgentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class ScanAllow(BaseModel):
    """What one repo lets through the pre-publication scan (`prepublish.py`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    paths: list[str] = Field(
        default_factory=list[str], description="Paths (fnmatch patterns) not scanned at all."
    )
    fingerprints: list[str] = Field(
        default_factory=list[str],
        description="Findings' fingerprints (SHA-1 of the found text) to let through.",
    )
    kinds: list[str] = Field(
        default_factory=list[str],
        description="Finding rules (`personal_reference`) or kinds (`email address`) to ignore.",
    )


class RepoConfig(BaseModel):
    """A repo this agent may work on; `github` ("owner/name") enables pull requests."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    url: str = Field(min_length=1, max_length=500)
    github: Annotated[str, StringConstraints(pattern=r"^[\w.-]+/[\w.-]+$")] | None = None
    prepublish_allow: ScanAllow = Field(default_factory=ScanAllow)
    auto_merge: bool = Field(
        default=False, description="Merge tier-1 pull requests without a person."
    )
    ci: bool = Field(
        default=True,
        description="The repo runs CI on pull requests: a tier-1 merge waits (up to `ci_wait`) "
        "for the head commit's check runs and statuses on GitHub to be green.",
    )


class ReviewConfig(BaseModel):
    """The second model's review of every change before it is pushed (`review.py`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    # off unless asked for: with one local model (the first-use setup) both default reviewer
    # tiers route to the writer, so every delivery paid two model calls for no review at all;
    # and off is the safe side, since an unreviewed change is never tier 1 (never auto-merged)
    enabled: bool = Field(
        default=False,
        description="On: every change is reviewed before it is pushed. Off: no review is "
        "asked, and no change is tier 1.",
    )
    models: list[str] = Field(
        default_factory=lambda: ["standard", "complex"],
        min_length=1,
        description="Reviewers asked in order (a model name or a gateway tier); the writer's "
        "model is skipped, and a reply the gateway routed to the writer is not counted.",
    )
    timeout: float = Field(default=120.0, gt=0, description="One review call.")
    max_diff_chars: int = Field(
        default=60_000, ge=1000, description="The diff sent is cut at this length (and says so)."
    )


class PrepublishConfig(BaseModel):
    """The pre-publication scan every delivered change passes before it is pushed."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    disabled_plugins: list[str] = Field(
        default_factory=lambda: ["IPPublicDetector"],
        description="detect-secrets plugins not run (a public IP address is no secret).",
    )
    base64_limit: float = Field(default=4.5, gt=0, le=8, description="Base64 entropy limit.")
    hex_limit: float = Field(default=3.0, gt=0, le=8, description="Hex entropy limit.")
    private_addresses: bool = Field(
        default=True, description="Flag private, link-local and CGNAT IP addresses."
    )
    private_host_suffixes: list[str] = Field(
        default_factory=lambda: [".internal", ".local", ".lan", ".corp", ".home.arpa", ".intranet"]
    )
    personal_names: list[str] = Field(default_factory=list[str])
    personal_emails: list[str] = Field(default_factory=list[str])
    any_email: bool = Field(
        default=True, description="Flag every email address outside `email_domains_allowed`."
    )
    email_domains_allowed: list[str] = Field(
        default_factory=lambda: [
            "example.com",
            "example.org",
            "example.net",
            "*.example",
            "*.invalid",
            "*.test",
            "localhost",
            "users.noreply.github.com",
        ]
    )
    home_paths: bool = Field(default=True, description="Flag /home/<name>, /Users/<name>…")
    home_names_allowed: list[str] = Field(
        default_factory=lambda: ["user", "username", "you", "me", "runner", "example"]
    )
    personal_paths: list[str] = Field(
        default_factory=list[str], description="More literal paths that name a person."
    )
    forbidden_files: list[str] = Field(
        default_factory=lambda: [
            ".env",
            ".env.*",
            "*.env",
            "id_rsa*",
            "id_dsa*",
            "id_ecdsa*",
            "id_ed25519*",
            "*.pem",
            "*.key",
            "*.p12",
            "*.pfx",
            "*.jks",
            "*.keystore",
            ".netrc",
            ".npmrc",
            ".pypirc",
            "*.log",
            "nohup.out",
            "*.pyc",
            "*/__pycache__/*",
            ".DS_Store",
            "*.swp",
            "*.tmp",
            "scratch/*",
            "tmp/*",
        ],
        description="Workspace files that must never be committed (fnmatch; no `/`: the name).",
    )
    files_allowed: list[str] = Field(
        default_factory=lambda: [".env.example", ".env.sample", ".env.template"],
        description="Exceptions to `forbidden_files`.",
    )
    max_file_bytes: int = Field(default=5_000_000, ge=1, description="Larger files are refused.")
    max_scan_bytes: int = Field(
        default=20_000_000, ge=1, description="A bigger diff is refused, not scanned in part."
    )


class SidecarConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    agent_id: AgentId
    token: SecretStr
    nats_url: str = Field(min_length=1)
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    hub_urls: dict[str, str] = Field(default_factory=dict[str, str])
    state_dir: Path | None = Field(
        default=None, description="Journal and status; default beside the config."
    )
    workspaces_dir: Path | None = Field(default=None, description="One checkout per repo.")
    repos: list[RepoConfig] = Field(
        default_factory=list[RepoConfig], description="Empty: any repo URL is accepted."
    )
    github_token: SecretStr | None = None
    github_api_url: str = "https://api.github.com"
    allow_hub_commands: bool = Field(
        default=False, description="Run shell commands and verification commands from tasks."
    )
    shell_isolation: Literal["auto", "namespaces", "none"] = Field(
        default="auto",
        description="How those commands run: `auto` in the namespace sandbox (read-only system, "
        "writable workspace, config and state dir hidden) where the machine can make user "
        "namespaces, else unisolated with a warning (log line, heartbeat `isolation: none`); "
        "`namespaces` requires the sandbox and refuses shell tasks (`isolation_unavailable`) "
        "where it cannot be made; `none` runs them as the sidecar's user, able to read its token.",
    )
    shell_network: bool = Field(
        default=True,
        description="Sandboxed shell and verification commands keep the network (installs, "
        "tests that fetch); false gives them a network namespace of their own (no network).",
    )
    capabilities: list[str] = Field(default_factory=list[str])
    executors: list[Literal["shell", "ollama", "claude", "scan"]] = Field(
        default_factory=lambda: ["shell", "ollama", "claude"],
        description="The executors this agent runs; `scan` (the hub's improvement scans, "
        "which read the repo and run none of it) only when listed.",
    )
    tier_executor: dict[str, Literal["shell", "ollama", "claude"]] = Field(
        default_factory=dict[str, Literal["shell", "ollama", "claude"]],
        description="Override the executor per complexity tier.",
    )
    ollama_url: str | None = None
    gateway_url: str | None = None
    max_verification_retries: int = Field(default=2, ge=0, le=5)
    heartbeat_interval: float = Field(default=5.0, gt=0)
    reconnect_wait: float = Field(default=1.0, gt=0, description="First backoff step.")
    reconnect_wait_max: float = Field(default=30.0, gt=0)
    inbox_ack_wait: float = Field(
        default=30.0, gt=0, description="Redelivery of an unacked inbox message."
    )
    inbox_fetch_timeout: float = Field(default=1.0, gt=0)
    progress_interval: float = Field(
        default=2.0, gt=0, description="At most one progress report per interval."
    )
    progress_max_lines: int = Field(default=50, ge=1, le=200)
    journal_keep_tasks: int = Field(
        default=500, ge=1, description="Closed tasks kept in the journal (pruned at start)."
    )
    min_free_disk_mb: int = Field(
        default=200, ge=0, description="Reject work when the workspaces' disk has less free."
    )
    task_timeout: float = Field(
        default=1800.0,
        gt=0,
        description="Longest a whole assignment (every attempt) may take on this agent; the "
        "hub's deadline, carried by the assignment, stops it sooner.",
    )
    kill_grace: float = Field(
        default=5.0, ge=0, description="SIGTERM to SIGKILL of a process group."
    )
    start_timeout: float = Field(
        default=600.0,
        gt=0,
        description="Longest an accepted task waits for the hub's `start` (sent once the queue "
        "holds it as working here); past this the attempt fails saying so, having run nothing.",
    )
    prepublish: PrepublishConfig = Field(default_factory=PrepublishConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    ci_wait: float = Field(
        default=1800.0,
        ge=0,
        description="Longest a due tier-1 merge waits for green CI; then the pull request is "
        "left open for a person (`result.delivery.ci` `pending`).",
    )
    ci_poll_interval: float = Field(
        default=20.0, gt=0, description="How often GitHub is asked for the checks meanwhile."
    )
    risk: RiskRules = Field(default_factory=RiskRules)
    git_timeout: float = Field(default=300.0, gt=0)
    http_timeout: float = Field(default=30.0, gt=0)
    fault_kill_at: str | None = Field(
        default=None,
        description="Testing only: SIGKILL the sidecar at this point (before_journal, "
        "before_inbox_ack, before_report_publish, after_report_publish).",
    )

    path: Path = Field(default=Path("sidecar.json"), exclude=True)

    @property
    def state(self) -> Path:
        return (self.state_dir or self.path.parent / f"{self.agent_id}-state").resolve()

    @property
    def workspaces(self) -> Path:
        return (self.workspaces_dir or self.path.parent / f"{self.agent_id}-workspaces").resolve()

    def repo(self, url: str) -> RepoConfig | None:
        """The configured repo a task's URL names (compared as `repo_key`s), or None.

        With no repos configured any URL is accepted as it is."""
        if not self.repos:
            return RepoConfig(url=url)
        wanted = repo_key(url)
        return next((r for r in self.repos if repo_key(r.url) == wanted), None)

    @property
    def journal_path(self) -> Path:
        return self.state / "journal.sqlite3"

    @property
    def status_path(self) -> Path:
        return self.state / "status.json"


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_layout(config: SidecarConfig) -> None:
    """Refuse a layout that would put secrets or code where a task's model can read them."""
    install = Path(agentcom_sidecar.__file__).resolve().parent
    workspaces, state = config.workspaces, config.state
    problems = [
        (_inside(config.path.resolve(), workspaces), "the config file is inside workspaces_dir"),
        (
            _inside(state, workspaces) or _inside(workspaces, state),
            "state_dir and workspaces_dir overlap",
        ),
        (
            _inside(install, workspaces) or _inside(workspaces, install),
            "workspaces_dir overlaps the sidecar's code",
        ),
    ]
    for bad, why in problems:
        if bad:
            raise InvalidError(
                f"{why}; keep secrets and code outside workspaces", field="workspaces_dir"
            )


def load(path: Path) -> SidecarConfig:
    """Read and check the config file; a bad one is an `InvalidError` naming the field."""
    try:
        mode = path.stat().st_mode
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidError(
            f"no sidecar config at {path}; `agentcom agent add` writes one", field="config"
        ) from None
    except json.JSONDecodeError as exc:
        raise InvalidError(
            f"{path} is not JSON: {exc.msg} at line {exc.lineno}", field="config"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidError(
            f"{path} holds the agent's token and must be private: chmod 600 {path}", field="config"
        )
    try:
        config = SidecarConfig.model_validate(raw | {"path": path.resolve()})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidError(f"{path}: {where}: {first['msg']}", field=where) from None
    check_layout(config)
    return config
