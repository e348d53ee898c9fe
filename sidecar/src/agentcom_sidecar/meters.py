"""The sidecar's instruments: verification verdicts, each check's result and duration, and how
long the commands of a task ran (a shell task's command, each command of the agent loop). The
sidecar serves no `/metrics`; with `OTEL_EXPORTER_OTLP_ENDPOINT` set it sends them by OTLP and
the collector exposes them to Prometheus (deploy/otel-collector.yaml). Made at import like a
logger."""

from agentcom_common import metering

_m = metering.meter("agentcom.sidecar")
verdicts = _m.create_counter(
    "agentcom.verifications",
    unit="{verification}",
    description="Verifications of an attempt's work, by verdict (pass, fail, not_verified).",
)
checks = _m.create_histogram(
    "agentcom.verification.check.duration",
    unit="s",
    description="Each verification check's duration, by check type and whether it passed.",
    explicit_bucket_boundaries_advisory=metering.SECONDS_BUCKETS,
)
commands = _m.create_histogram(
    "agentcom.sandbox.command.duration",
    unit="s",
    description="A task's commands (a shell task's command, each one the agent loop's tools run), by "
    "executor, isolation (namespace or none) and outcome (ok, failed, timeout, output_limit).",
    explicit_bucket_boundaries_advisory=metering.SECONDS_BUCKETS,
)


def count_command(executor: str, isolated: bool, outcome: str, seconds: float) -> None:
    commands.record(
        seconds,
        {
            "executor": executor,
            "isolation": "namespace" if isolated else "none",
            "outcome": outcome,
        },
    )
