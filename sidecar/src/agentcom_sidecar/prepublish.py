"""The pre-publication scan: what a change must not carry off this machine.

Run on the branch's change against its base (`changes.Change`) after the commit and before the
push; any finding blocks the push. Four rules:
- `secret`: detect-secrets' plugins (entropy and credential-specific: AWS, GitHub, private
  keys, JWT, Slack, Stripe…) over the diff's added lines, with its false-positive filters. Its
  `pragma: allowlist secret` comment is ignored: the code under scan was written by the task,
  so only the agent's config may allow a finding (`ScanAllow`).
- `private_address`: private, link-local and CGNAT IP addresses; host names under a private
  suffix (`.internal`, `.local`…) where they stand as a host (after `://`, `@` or a quote).
- `personal_reference`: the configured names, emails and paths; any email address outside the
  allowed domains; home directories (`/home/<name>`, `/Users/<name>`, `C:\\Users\\<name>`).
- `forbidden_file`: files that must never be committed (env files, keys, scratch output) and
  files over `max_file_bytes`; deleting one is fine.
A finding says where and what, with the SHA-1 of the text found: never the text itself.
"""

import fnmatch
import functools
import hashlib
import ipaddress
import re
import threading
from collections.abc import Iterator, Sequence

from agentcom_common.contracts.delivery import FindingRule, ScanFinding
from agentcom_common.risk import matches
from agentcom_sidecar.changes import Change
from agentcom_sidecar.config import PrepublishConfig, ScanAllow

# detect-secrets keeps its settings in one process-wide object: one scan at a time
_DETECTOR = threading.Lock()
_IGNORED_FILTERS = (
    # paths in a diff are relative to the checkout, not to our cwd: this filter would drop all
    "detect_secrets.filters.common.is_invalid_file",
    # a task could write the pragma beside its own secret
    "detect_secrets.filters.allowlist.is_line_allowlisted",
)
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){1,7}:?[0-9A-Fa-f]{0,4}(?![\w:])")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
_HOME = re.compile(r"(?:/home/|/Users/|[A-Za-z]:\\{1,2}Users\\{1,2})([A-Za-z0-9._-]+)")
_PRIVATE_NETS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
)


def scan(change: Change, rules: PrepublishConfig, allow: ScanAllow) -> list[ScanFinding]:
    """Every finding in `change` that `allow` does not let through, by path and line."""
    found = [*_files(change, rules), *_secrets(change.diff, rules)]
    for path, line, text in added_lines(change.diff):
        found += _references(path, line, text, rules)
    if not change.complete:
        found.append(
            ScanFinding(
                rule="scan",
                kind=f"diff longer than max_scan_bytes ({rules.max_scan_bytes}): not scanned",
                path="",
            )
        )
    kept = {
        (f.rule, f.kind, f.path, f.line, f.fingerprint): f for f in found if not _allowed(f, allow)
    }
    return sorted(kept.values(), key=lambda f: (f.path, f.line or 0, f.rule, f.kind))


def summary(findings: Sequence[ScanFinding]) -> str:
    """One line per finding for the task's error (redacted like the findings themselves)."""
    lines = [
        f"- {f.rule}: {f.kind}"
        + (f" in {f.path}" if f.path else "")
        + (f":{f.line}" if f.line else "")
        for f in findings[:40]
    ]
    more = [f"- and {len(findings) - 40} more"] if len(findings) > 40 else []
    head = f"pre-publication scan blocked the push ({len(findings)} findings; nothing was pushed)"
    return "\n".join([head, *lines, *more])


def added_lines(diff: str) -> Iterator[tuple[str, int, str]]:
    """(path, line number, text) of every line a `-U0` unified diff adds."""
    path: str | None = None
    line = added = removed = 0
    for raw in diff.splitlines():
        if added or removed:  # inside a hunk: its header said how many lines follow
            if raw.startswith("+"):
                added -= 1
                if path is not None:
                    yield path, line, raw[1:]
                line += 1
            elif raw.startswith("-"):
                removed -= 1
            elif raw.startswith(" "):
                added, removed, line = added - 1, removed - 1, line + 1
            continue
        if raw.startswith("+++ "):
            path = raw[6:] if raw.startswith("+++ b/") else None
        elif hunk := re.match(r"@@ -\d+(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", raw):
            removed = int(hunk[1]) if hunk[1] is not None else 1
            line = int(hunk[2])
            added = int(hunk[3]) if hunk[3] is not None else 1


def _fingerprint(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()  # detect-secrets' hashed_secret


def _allowed(finding: ScanFinding, allow: ScanAllow) -> bool:
    return (
        bool(finding.path and matches(finding.path, allow.paths))
        or (finding.fingerprint != "" and finding.fingerprint in allow.fingerprints)
        or finding.rule in allow.kinds
        or finding.kind in allow.kinds
    )


def _files(change: Change, rules: PrepublishConfig) -> list[ScanFinding]:
    found: list[ScanFinding] = []
    for f in change.stats.files:
        if f.status == "deleted":
            continue
        if matches(f.path, rules.forbidden_files) and not matches(f.path, rules.files_allowed):
            found.append(_finding("forbidden_file", "file that must never be committed", f.path))
        size = change.sizes.get(f.path, 0)
        if size > rules.max_file_bytes:
            kind = f"file of {size} bytes (max_file_bytes {rules.max_file_bytes})"
            found.append(_finding("forbidden_file", kind, f.path))
    return found


def _secrets(diff: str, rules: PrepublishConfig) -> list[ScanFinding]:
    # imported on first use: detect_secrets (and the requests it pulls in) was a fifth of the
    # sidecar's start-up imports, paid by every start although only a delivery scans
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.core.scan import scan_diff
    from detect_secrets.settings import get_settings, transient_settings

    limits = {
        "Base64HighEntropyString": rules.base64_limit,
        "HexHighEntropyString": rules.hex_limit,
    }
    plugins: list[dict[str, str | float]] = [
        {"name": name} | ({"limit": limits[name]} if name in limits else {})
        for name in (c.__name__ for c in get_mapping_from_secret_type_to_class().values())
        if name not in rules.disabled_plugins
    ]
    with _DETECTOR, transient_settings({"plugins_used": plugins}):
        get_settings().disable_filters(*_IGNORED_FILTERS)
        return [
            ScanFinding(
                rule="secret",
                kind=str(s.type)[:200],
                path=str(s.filename)[:1000],
                line=s.line_number,
                fingerprint=s.secret_hash,
            )
            for s in scan_diff(diff)
        ]


def _references(path: str, line: int, text: str, rules: PrepublishConfig) -> list[ScanFinding]:
    return [
        _finding(rule, kind, path, line, what)
        for rule, kind, what in [*_addresses(text, rules), *_personal(text, rules)]
    ]


def _addresses(text: str, rules: PrepublishConfig) -> Iterator[tuple[FindingRule, str, str]]:
    if not rules.private_addresses:
        return
    for m in [*_IPV4.finditer(text), *_IPV6.finditer(text)]:
        if _is_private(m[0]):
            yield "private_address", "private IP address", m[0]
    for m in _private_hosts(tuple(rules.private_host_suffixes)).finditer(text):
        yield "private_address", "private host name", m[0]


def _personal(text: str, rules: PrepublishConfig) -> Iterator[tuple[FindingRule, str, str]]:
    for name in rules.personal_names:
        for m in re.finditer(rf"(?i)(?<!\w){re.escape(name)}(?!\w)", text):
            yield "personal_reference", "personal name", m[0]
    emails = {e.lower() for e in rules.personal_emails}
    for m in _EMAIL.finditer(text):
        if m[0].lower() in emails:
            yield "personal_reference", "personal email address", m[0]
        elif rules.any_email and not _domain_allowed(m[1], rules.email_domains_allowed):
            yield "personal_reference", "email address", m[0]
    allowed = {n.lower() for n in rules.home_names_allowed}
    for m in _HOME.finditer(text) if rules.home_paths else ():
        if m[1].lower() not in allowed:
            yield "personal_reference", "home directory path", m[0]
    for personal in rules.personal_paths:
        if personal in text:
            yield "personal_reference", "personal path", personal


def _is_private(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return any(address.version == n.version and address in n for n in _PRIVATE_NETS)


@functools.cache
def _private_hosts(suffixes: tuple[str, ...]) -> re.Pattern[str]:
    ends = "|".join(re.escape(s.lstrip(".")) for s in suffixes) or r"(?!)"
    return re.compile(
        rf"""(?:(?<=://)|(?<=@)|(?<=["'`]))[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:{ends})(?=$|["'`:/\s,;)\]])""",
        re.IGNORECASE,
    )


def _domain_allowed(domain: str, allowed: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(domain.lower(), pattern.lower()) for pattern in allowed)


def _finding(
    rule: FindingRule, kind: str, path: str, line: int | None = None, text: str = ""
) -> ScanFinding:
    return ScanFinding(
        rule=rule,
        kind=kind,
        path=path[:1000],
        line=line,
        fingerprint=_fingerprint(text) if text else "",
    )
