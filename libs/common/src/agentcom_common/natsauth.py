"""NATS authentication: hub credentials, the auth-callout issuer key, and nkey-signed JWTs.

Every NATS server we start runs with auth on. Services connect as the hub user (in the URL,
`nats://hub:<password>@host:port`), which bypasses the callout. Anyone else (an agent's
sidecar) is asked about over `$SYS.REQ.USER.AUTH`: the scheduler holds the issuer seed, checks
the agent's NATS password and answers with a user JWT carrying that agent's permissions. So a
new, rotated or removed agent takes effect without touching nats-server.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import nkeys

ACCOUNT: Final = "AGENTCOM"
"""The one account services and agents share (JetStream lives there)."""
SYSTEM_ACCOUNT: Final = "SYS"
HUB_USER: Final = "hub"
SYSTEM_USER: Final = "agentcom-sys"
"""The scheduler's own system-account login (to kick a removed agent's connections)."""
AUTH_SUBJECT: Final = "$SYS.REQ.USER.AUTH"

_nk: Any = nkeys


def new_account_seed() -> str:
    """A fresh account nkey seed (`SA…`): the callout issuer."""
    return bytes(_nk.encode_seed(os.urandom(32), _nk.PREFIX_BYTE_ACCOUNT)).decode()


def public_key(seed: str) -> str:
    """The public key (`A…`) of an account seed; nats-server's `auth_callout.issuer`."""
    return bytes(_nk.from_seed(seed.encode()).public_key).decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_jwt(claims: dict[str, Any], seed: str) -> str:
    """A NATS JWT (`alg: ed25519-nkey`) of `claims`, issued and signed by `seed`."""
    keys = _nk.from_seed(seed.encode())
    body = dict(claims) | {"iat": int(time.time()), "iss": public_key(seed), "jti": ""}
    digest = hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).digest()
    body["jti"] = base64.b32encode(digest).decode().rstrip("=")
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    signature = bytes(keys.sign(f"{header}.{payload}".encode()))
    return f"{header}.{payload}.{_b64(signature)}"


def decode_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (the server's request arrives over our own connection)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT")
    claims = json.loads(_unb64(parts[1]))
    if not isinstance(claims, dict):
        raise ValueError("JWT claims are not an object")
    return claims  # pyright: ignore[reportUnknownVariableType]  # JSON object


def system_password(seed: str) -> str:
    """The scheduler's system login password, derived from the seed only it holds."""
    return hmac.new(seed.encode(), b"agentcom-sys", hashlib.sha256).hexdigest()


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def with_credentials(url: str, user: str, password: str) -> str:
    """`nats://user:password@host:port` from `nats://host:port`."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True, slots=True)
class Login:
    """Where and as whom to connect: the servers without credentials, and the credentials."""

    servers: list[str]
    user: str | None = None
    password: str | None = None


def login_of(url: str) -> Login:
    """`url` may name several servers, comma-separated: the nodes of a NATS cluster
    (`nats://hub:pw@a:4222,nats://b:4222`). Credentials in any of them apply to all of them and
    to the nodes the cluster announces. nats-py sends a URL's credentials to that URL's server
    only, so with them left in the URL a service whose node died was refused by every other
    node (those it knew from discovery, and any listed without credentials) until that one
    came back."""
    servers: list[str] = []
    user: str | None = None
    password: str | None = None
    for part in (p.strip() for p in url.split(",")):
        if not part:
            continue
        parts = urlsplit(part if "://" in part else f"nats://{part}")
        if parts.username is not None and user is None:
            user, password = unquote(parts.username), parts.password
            password = None if password is None else unquote(password)
        servers.append(strip_credentials(urlunsplit(parts)))
    return Login(servers, user, password)


def strip_credentials(url: str) -> str:
    """The URL without its user and password."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def redact(url: str) -> str:
    """The URL (or a cluster's comma-separated URLs) without user and password, fit to print."""
    if "," in url:
        return ",".join(redact(part) for part in url.split(","))
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


@dataclass(frozen=True, slots=True)
class ServerAuth:
    """What a nats-server with auth on needs, and what the hub needs to talk to it."""

    hub_password: str
    issuer_seed: str

    @property
    def issuer(self) -> str:
        return public_key(self.issuer_seed)

    def config(self) -> str:
        """The nats-server config block: one account, the hub user, callout for the rest."""
        return (
            "accounts {\n"
            f"  {ACCOUNT} {{\n"
            "    jetstream: enabled\n"
            f"    users: [ {{ user: {HUB_USER}, password: {json.dumps(self.hub_password)} }} ]\n"
            "  }\n"
            f"  {SYSTEM_ACCOUNT} {{}}\n"
            "}\n"
            f"system_account: {SYSTEM_ACCOUNT}\n"
            "authorization {\n"
            "  auth_callout {\n"
            f"    issuer: {self.issuer}\n"
            f"    account: {ACCOUNT}\n"
            f"    auth_users: [ {HUB_USER} ]\n"
            "  }\n"
            "}\n"
        )

    def hub_url(self, url: str) -> str:
        return with_credentials(url, HUB_USER, self.hub_password)

    @classmethod
    def generate(cls) -> "ServerAuth":
        return cls(hub_password=secrets.token_urlsafe(32), issuer_seed=new_account_seed())

    @classmethod
    def load_or_create(cls, path: Path) -> "ServerAuth":
        """Read `path` (JSON), or create it with fresh secrets (mode 0600)."""
        if path.exists():
            data = json.loads(path.read_text())
            return cls(hub_password=data["hub_password"], issuer_seed=data["issuer_seed"])
        made = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"hub_password": made.hub_password, "issuer_seed": made.issuer_seed}, out)
        return made
