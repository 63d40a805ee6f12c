"""Signed, expiring tokens a stateless web app hands to the browser for the websocket.

In the spirit of Flask's signed session cookies (both use itsdangerous): the web app, which
already knows who the user is, calls ``live.tokens.issue({"user": 7})`` and puts the token
in the page; the gateway verifies it in ``hello`` without any shared session store. A
token is readable by its holder (it is signed, not encrypted): put identities in it, never
secrets.

The secret comes from ``LIVESYNC_SECRET``; every process that issues or verifies tokens
needs the same one. Rotating it: pass the new secret first and the old ones after
(``secret="new,old"``); tokens signed with any of them verify until they expire.
"""

from __future__ import annotations

import time
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .errors import LiveSyncError


class TokenError(LiveSyncError):
    """A token is missing, forged, malformed or expired; ``expired`` tells which."""

    def __init__(self, message: str, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


class Tokens:
    """Issues and verifies tokens for one secret (or a rotation list of secrets)."""

    SALT = "livesync.websocket"

    def __init__(self, secret: str, max_age: int = 3600) -> None:
        secrets = [s for s in secret.split(",") if s]
        if not secrets or any(len(s) < 16 for s in secrets):
            raise ValueError(
                "LIVESYNC_SECRET must be set to at least 16 characters "
                '(python -c "import secrets; print(secrets.token_urlsafe(32))")'
            )
        self.max_age = max_age
        self._serializer = URLSafeTimedSerializer(secrets[::-1], salt=self.SALT)

    def issue(self, identity: Any) -> str:
        """A token carrying ``identity`` (anything JSON can hold), valid for ``max_age`` s."""
        return str(self._serializer.dumps(identity))

    def verify(self, token: str, max_age: int | None = None) -> Any:
        """The identity inside ``token``; raises :class:`TokenError` if it is not valid now."""
        age = self.max_age if max_age is None else max_age
        try:
            return self._serializer.loads(token, max_age=age)
        except SignatureExpired as exc:
            raise TokenError("token expired", expired=True) from exc
        except BadSignature as exc:
            raise TokenError("token is not valid") from exc

    def expires_at(self, token: str) -> float:
        """When ``token`` expires (Unix time), without checking its age."""
        try:
            _, issued = self._serializer.loads(token, return_timestamp=True)
        except BadSignature as exc:
            raise TokenError("token is not valid") from exc
        return float(issued.timestamp()) + self.max_age

    @staticmethod
    def now() -> float:
        return time.time()
