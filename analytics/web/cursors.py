"""Opaque feed cursors: the vote store's cursor, sealed before it leaves the server.

The SQLite store's cursor is the votes table's row id, so two cursors a county user sees
would tell how many votes the whole city received in between. The control center hands
out the cursor encrypted and authenticated instead, with a random nonce: equal cursors
look different, and a forged or altered one is refused.

The construction is encrypt-then-MAC with HMAC-SHA256 as the pseudo-random function
(keystream = HMAC(k_enc, nonce), tag = HMAC(k_mac, nonce || ciphertext)), because the
standard library has no cipher and a cursor of at most 64 bytes does not justify a
dependency on ``cryptography``; docs/security.md says the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

MAX_CURSOR = 64
_NONCE, _TAG = 12, 12


class CursorSealer:
    """Seal and open store cursors with keys derived from the app's secret key."""

    def __init__(self, secret: str | bytes):
        secret = secret.encode("utf-8") if isinstance(secret, str) else secret
        self._enc = hmac.new(secret, b"manyi feed cursor: encryption", hashlib.sha256).digest()
        self._mac = hmac.new(secret, b"manyi feed cursor: authentication", hashlib.sha256).digest()

    def seal(self, cursor: str) -> str:
        """The opaque token of ``cursor`` (a new one on every call)."""
        plain = cursor.encode("utf-8")
        if len(plain) > MAX_CURSOR:
            raise ValueError("feed cursor too long")
        nonce = secrets.token_bytes(_NONCE)
        body = bytes(a ^ b for a, b in zip(plain, self._stream(nonce, len(plain))))
        tag = hmac.new(self._mac, nonce + body, hashlib.sha256).digest()[:_TAG]
        return base64.urlsafe_b64encode(nonce + body + tag).decode("ascii").rstrip("=")

    def open(self, token: str) -> str:
        """The store cursor inside ``token``; ValueError for anything this server did not seal."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raise ValueError("not a feed cursor") from None
        if len(token) > 200 or len(raw) < _NONCE + _TAG + 1:
            raise ValueError("not a feed cursor")
        nonce, body, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
        expected = hmac.new(self._mac, nonce + body, hashlib.sha256).digest()[:_TAG]
        if not hmac.compare_digest(tag, expected):
            raise ValueError("not a feed cursor of this server")
        plain = bytes(a ^ b for a, b in zip(body, self._stream(nonce, len(body))))
        return plain.decode("utf-8")

    def _stream(self, nonce: bytes, n: int) -> bytes:
        out, block = b"", 0
        while len(out) < n:
            out += hmac.new(self._enc, nonce + block.to_bytes(4, "big"), hashlib.sha256).digest()
            block += 1
        return out[:n]
