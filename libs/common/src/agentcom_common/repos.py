"""The one spelling of a repo URL that every service compares: queue, scheduler, CLI, sidecar.

`/srv/app.git`, `/srv/app.git/` and `/srv/app` name the same repo, and so do
`https://git.example/app.git` and `https://git.example/app`. Each part of the hub once trimmed
on its own (the queue trimmed `.git`, the scheduler kept what was typed), so an agent added
with `--repo /srv/app.git` never matched a task on `/srv/app.git` and the task stayed queued
with no reason. Every place that stores or compares a repo goes through `repo_key`.

The key is for comparing; a sidecar clones the URL it was configured with (git itself finds
`/srv/app.git` when asked for `/srv/app`).
"""

from collections.abc import Iterable


def repo_key(url: str) -> str:
    """`url` without surrounding blanks, trailing slashes and one trailing `.git`."""
    return url.strip().rstrip("/").removesuffix(".git")


def repo_keys(urls: Iterable[str]) -> list[str]:
    """Each URL's key, in order, each once. (An empty key is kept: it matches no task, where
    dropping it could turn a list of repos into an empty one, which means any repo.)"""
    return list(dict.fromkeys(map(repo_key, urls)))
