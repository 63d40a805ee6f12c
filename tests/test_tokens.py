"""Signed, expiring tokens."""

from __future__ import annotations

import time

import pytest

from livesync.tokens import TokenError, Tokens

SECRET = "s" * 32


def test_round_trip() -> None:
    tokens = Tokens(SECRET)
    assert tokens.verify(tokens.issue({"user": 7, "roles": ["ops"]})) == {
        "user": 7,
        "roles": ["ops"],
    }


def test_forged_or_tampered_tokens_are_refused() -> None:
    tokens = Tokens(SECRET)
    token = tokens.issue({"user": 7})
    with pytest.raises(TokenError, match="not valid") as info:
        tokens.verify(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    assert not info.value.expired
    with pytest.raises(TokenError, match="not valid"):
        Tokens("x" * 32).verify(token)  # another secret
    with pytest.raises(TokenError, match="not valid"):
        tokens.verify("garbage")


def test_tokens_expire() -> None:
    tokens = Tokens(SECRET, max_age=1)
    token = tokens.issue({"user": 7})
    assert tokens.expires_at(token) == pytest.approx(time.time() + 1, abs=1.5)
    time.sleep(2.1)  # itsdangerous timestamps have one-second resolution
    with pytest.raises(TokenError, match="expired") as info:
        tokens.verify(token)
    assert info.value.expired
    assert tokens.verify(token, max_age=60) == {"user": 7}


def test_secret_rotation_accepts_old_tokens_and_signs_with_the_new_secret() -> None:
    old = Tokens("o" * 32)
    token = old.issue({"user": 1})
    rotated = Tokens("n" * 32 + "," + "o" * 32)
    assert rotated.verify(token) == {"user": 1}
    assert Tokens("n" * 32).verify(rotated.issue({"user": 2})) == {"user": 2}


def test_weak_or_missing_secrets_are_refused() -> None:
    for secret in ("", "short", "x" * 32 + ",short"):
        with pytest.raises(ValueError, match="LIVESYNC_SECRET"):
            Tokens(secret)
