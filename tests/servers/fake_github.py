"""A small real HTTP server that plays GitHub's REST API where AgentCom reads or writes it, in
GitHub's own shapes, and signs webhook deliveries as GitHub does.

- pulls: `GET /repos/{o}/{r}/pulls?head=o:branch&state=open`, `POST` (the sidecar opens one),
  `GET /repos/{o}/{r}/pulls/{n}`, `GET .../pulls/{n}/reviews/{id}/comments`;
- Actions: `GET /repos/{o}/{r}/actions/runs/{id}/jobs`, `GET .../actions/jobs/{id}/logs`
  (a 302 to the log's download URL, as GitHub answers).
`requests` records every call as (method, path, Authorization).
"""

import hashlib
import hmac
import json
import threading
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Json = dict[str, Any]


@dataclass
class FakeGitHub:
    url: str = ""
    pulls: list[Json] = field(default_factory=list[Json])
    logs: dict[int, str] = field(default_factory=dict[int, str])
    run_jobs: dict[int, list[Json]] = field(default_factory=dict[int, list[Json]])
    comments: dict[tuple[int, int], list[Json]] = field(
        default_factory=dict[tuple[int, int], list[Json]]
    )
    requests: list[tuple[str, str, str | None]] = field(
        default_factory=list[tuple[str, str, str | None]]
    )

    def pull(self, number: int) -> Json:
        return next(p for p in self.pulls if p["number"] == number)

    def route(
        self, method: str, path: str, query: dict[str, str], body: Json | None
    ) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[:1] == ["_logs"]:
            return 200, self.logs[int(parts[1])]
        if len(parts) < 4 or parts[0] != "repos":
            return 404, {"message": "Not Found"}
        repo, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        if rest == ["pulls"] and method == "POST" and body is not None:
            return 201, self._create(repo, body)
        if rest == ["pulls"]:
            head = query.get("head", "")
            found = [
                p
                for p in self.pulls
                if f"{parts[1]}:{p['head']['ref']}" == head
                and p["state"] == query.get("state", "open")
            ]
            return 200, found
        if len(rest) == 2 and rest[0] == "pulls":
            return 200, self.pull(int(rest[1]))
        if len(rest) == 5 and rest[0] == "pulls" and rest[2] == "reviews":
            return 200, self.comments.get((int(rest[1]), int(rest[3])), [])
        if len(rest) == 4 and rest[:2] == ["actions", "runs"] and rest[3] == "jobs":
            jobs = self.run_jobs.get(int(rest[2]), [])
            return 200, {"total_count": len(jobs), "jobs": jobs}
        if len(rest) == 4 and rest[:2] == ["actions", "jobs"] and rest[3] == "logs":
            job = int(rest[2])
            if job not in self.logs:
                return 404, {"message": "Not Found"}
            return 302, f"{self.url}/_logs/{job}"
        return 404, {"message": "Not Found"}

    def _create(self, repo: str, body: Json) -> Json:
        number = len(self.pulls) + 1
        pull: Json = {
            "number": number,
            "state": "open",
            "merged": False,
            "mergeable": True,
            "title": body["title"],
            "body": body.get("body", ""),
            "head": {"ref": body["head"], "sha": "0" * 40},
            "base": {"ref": body["base"]},
            "html_url": f"https://github.example/{repo}/pull/{number}",
        }
        self.pulls.append(pull)
        return pull


@contextmanager
def serve() -> Generator[FakeGitHub]:
    fake = FakeGitHub()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self, method: str) -> None:
            fake.requests.append((method, self.path, self.headers.get("Authorization")))
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, reply = fake.route(method, parts.path, query, body)
            if status == 302:
                self.send_response(302)
                self.send_header("Location", str(reply))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
            self.send_response(status)
            self.send_header(
                "Content-Type", "text/plain" if isinstance(reply, str) else "application/json"
            )
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def log_message(self, format: str, *args: object) -> None:  # noqa: ARG002  # quiet tests
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def signed(secret: str, event: str, payload: Json, delivery: str) -> tuple[bytes, dict[str, str]]:
    """A delivery as GitHub sends it: the body and its headers, signed with `secret`."""
    body = json.dumps(payload).encode()
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={mac}",
    }


def repository(full_name: str, clone_url: str, default_branch: str = "main") -> Json:
    return {
        "full_name": full_name,
        "default_branch": default_branch,
        "clone_url": clone_url,
        "html_url": f"https://github.example/{full_name}",
    }
