"""HTTP API of the scheduler: tokens for now (agents and matching come with issue #5)."""

import logging

from fastapi import APIRouter, status

from agentcom_common import auth, clock, subjects
from agentcom_common.contracts.auth import CreateToken, IssuedTokenView, TokenRevoked, TokenView
from agentcom_common.service import Res
from agentcom_common.web import Admin

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/tokens", tags=["tokens"])


def _view(info: auth.TokenInfo) -> TokenView:
    return TokenView(
        token_id=info.token_id,
        role=info.role.value,
        name=info.name,
        created_at=info.created_at,
        revoked_at=info.revoked_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_token(body: CreateToken, res: Res, who: Admin) -> IssuedTokenView:
    """Create a token with a role; the secret is in this reply only (stored hashed).

    Errors: 401 `missing_token`/`invalid_token`, 403 `forbidden`, 422 `invalid_field`.
    """
    issued = await auth.issue(res.engine, auth.Role(body.role), body.name)
    log.info(
        "token.created", extra={"token_id": issued.token_id, "role": body.role, "by": who.token_id}
    )
    return IssuedTokenView(
        token_id=issued.token_id,
        role=issued.role.value,
        name=issued.name,
        created_at=clock.now(),
        revoked_at=None,
        token=issued.token,
    )


@router.get("")
async def list_tokens(res: Res, _who: Admin) -> list[TokenView]:
    """List every token: id, role, name, when created and revoked. Never the secret."""
    return [_view(info) for info in await auth.list_tokens(res.engine)]


@router.delete("/{token_id}")
async def revoke_token(token_id: str, res: Res, who: Admin) -> TokenView:
    """Revoke a token (idempotent). Every service refuses it within `auth_cache_ttl`.

    Errors: 404 `token_not_found`.
    """
    info = await auth.revoke(res.engine, token_id)
    res.verifier.forget(token_id)
    assert info.revoked_at is not None
    # wakes the other services' caches now; their TTL covers a lost message
    await res.nc.publish(
        subjects.TOKEN_REVOKED,
        TokenRevoked(token_id=token_id, revoked_at=info.revoked_at).model_dump_json().encode(),
    )
    log.info("token.revoked", extra={"token_id": token_id, "by": who.token_id})
    return _view(info)
