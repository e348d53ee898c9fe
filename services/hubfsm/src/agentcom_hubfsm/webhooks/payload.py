"""Reading GitHub's webhook payloads, which are JSON objects of GitHub's making: every lookup
tolerates a missing or differently shaped level (None), so an odd payload is ignored, never a
500."""

from typing import Any, cast


def dig(payload: Any, *keys: str) -> Any:
    """`payload[k1][k2]...`, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(payload, dict):
            return None
        payload = cast("dict[str, Any]", payload).get(key)
    return payload


def repo_urls(payload: dict[str, Any]) -> list[str]:
    """The URLs a goal may name the payload's repository by."""
    found = [dig(payload, "repository", k) for k in ("clone_url", "html_url", "ssh_url", "git_url")]
    urls = [u for u in found if isinstance(u, str) and u]
    return sorted({*urls, *(u.removesuffix(".git") for u in urls), *(u + ".git" for u in urls)})
