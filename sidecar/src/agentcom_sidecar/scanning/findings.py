"""Building findings: one place stamps the fingerprint (`agentcom_common.contracts.scan`), and
`Skipped` says why a scanner could not run (the result names it; the others still run)."""

from agentcom_common.contracts.scan import ScanFinding, Severity, fingerprint

MAX_EVIDENCE = 10


class SkippedError(Exception):
    """This scanner cannot run on this workspace (no config, no binary): the message says why."""


def finding(
    category: str,
    severity: Severity,
    title: str,
    subject: str,
    files: list[str],
    evidence: list[str],
) -> ScanFinding:
    return ScanFinding(
        category=category,
        severity=severity,
        title=title[:200],
        subject=subject[:500],
        files=sorted(set(files))[:50],
        evidence=[e[:500] for e in evidence[:MAX_EVIDENCE]],
        fingerprint=fingerprint(category, files, subject),
    )
