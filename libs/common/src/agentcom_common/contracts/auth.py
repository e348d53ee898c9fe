"""Contracts of the token API (owned by the scheduler) and the revocation event."""

from datetime import datetime
from typing import Literal

from pydantic import Field

from agentcom_common.contracts.base import Contract, Request


class CreateToken(Request):
    role: Literal["admin", "agent", "viewer"]
    name: str = Field(min_length=1, max_length=200, description="Who or what the token is for.")


class TokenView(Contract):
    token_id: str
    role: str
    name: str
    created_at: datetime
    revoked_at: datetime | None


class IssuedTokenView(TokenView):
    token: str = Field(description="The secret; shown in this reply only, stored hashed.")


class TokenRevoked(Contract):
    """Published on `agentcom.evt.auth.token_revoked`; every service drops it from its cache."""

    token_id: str
    revoked_at: datetime
