"""The hub's reads from GitHub's REST API: a failing job's log, a review's comments, a pull
request by branch or number. Reads only; the sidecars open and push the pull requests.

A read that fails (GitHub away, a 4xx) raises `GitHubReadError` naming what and why, never
the token; callers carry the reason into what they make instead of the data (a follow-up task
says the log could not be read rather than going without saying so).
"""

from dataclasses import dataclass
from typing import Any, cast

import httpx
from pydantic import SecretStr


class GitHubReadError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Comment:
    path: str
    line: int | None
    body: str


@dataclass(frozen=True, slots=True)
class Pull:
    number: int
    url: str
    branch: str
    base: str
    head_sha: str
    state: str  # open | closed
    merged: bool
    mergeable: bool | None  # None: GitHub has not computed it yet


@dataclass(frozen=True, slots=True)
class GitHub:
    api: str
    token: SecretStr | None
    timeout: float = 20.0

    async def _get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token.get_secret_value()}"
        try:
            # a job's log answers 302 to a short-lived download URL
            async with httpx.AsyncClient(
                base_url=self.api, headers=headers, timeout=self.timeout, follow_redirects=True
            ) as client:
                got = await client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise GitHubReadError(f"GitHub API unreachable: {type(exc).__name__}") from None
        if got.status_code >= 400:
            raise GitHubReadError(f"GET {path}: GitHub answered {got.status_code}")
        return got

    async def _json(self, path: str, params: dict[str, str] | None = None) -> Any:
        try:
            return (await self._get(path, params)).json()
        except ValueError:
            raise GitHubReadError(f"GET {path}: GitHub answered with no JSON") from None

    async def log_tail(self, repo: str, job_id: int, lines: int) -> str:
        text = (await self._get(f"/repos/{repo}/actions/jobs/{job_id}/logs")).text
        return "\n".join(text.rstrip("\n").splitlines()[-lines:])

    async def failed_jobs(self, repo: str, run_id: int) -> list[tuple[int, str]]:
        """(job id, name) of a workflow run's jobs that failed."""
        found = await self._json(f"/repos/{repo}/actions/runs/{run_id}/jobs")
        try:
            jobs = cast("list[dict[str, Any]]", found["jobs"])
            return [
                (int(j["id"]), str(j["name"]))
                for j in jobs
                if j.get("conclusion") in FAILED_CONCLUSIONS
            ]
        except (LookupError, TypeError, ValueError):
            raise GitHubReadError("a workflow run's jobs were not GitHub's shape") from None

    async def review_comments(self, repo: str, number: int, review_id: int) -> list[Comment]:
        found = await self._json(f"/repos/{repo}/pulls/{number}/reviews/{review_id}/comments")
        try:
            return [
                Comment(
                    str(c["path"]),
                    None if c.get("line") is None else int(c["line"]),
                    str(c.get("body", "")),
                )
                for c in cast("list[dict[str, Any]]", found)
            ]
        except (LookupError, TypeError, ValueError):
            raise GitHubReadError("a review's comments were not GitHub's shape") from None

    async def pull_for(self, repo: str, branch: str) -> Pull | None:
        """The open pull request whose head is `branch` in `repo` itself."""
        owner = repo.split("/", 1)[0]
        found = await self._json(
            f"/repos/{repo}/pulls", {"head": f"{owner}:{branch}", "state": "open"}
        )
        pulls = cast("list[dict[str, Any]]", found) if isinstance(found, list) else []
        return parse_pull(pulls[0]) if pulls else None

    async def pull(self, repo: str, number: int) -> Pull:
        return parse_pull(await self._json(f"/repos/{repo}/pulls/{number}"))


FAILED_CONCLUSIONS = frozenset({"failure", "timed_out"})


def parse_pull(body: Any) -> Pull:
    try:
        return Pull(
            number=int(body["number"]),
            url=str(body["html_url"]),
            branch=str(body["head"]["ref"]),
            base=str(body["base"]["ref"]),
            head_sha=str(body["head"].get("sha", "")),
            state=str(body.get("state", "open")),
            merged=bool(body.get("merged", False)),
            mergeable=body.get("mergeable"),
        )
    except (LookupError, TypeError, ValueError):
        raise GitHubReadError("a pull request was not GitHub's shape") from None
