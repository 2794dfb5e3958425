"""API keys: owner hashes, connection labels, encryption at rest, redaction."""
from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


def key_hash(secret_key: str, api_key: str) -> str:
    """The owner id of watches and subscriptions: HMAC-SHA256(SECRET_KEY, key), hex."""
    return hmac.new(secret_key.encode(), api_key.encode(), hashlib.sha256).hexdigest()


def key_label(api_key: str) -> str:
    """A connection label: no app name (Zapier and Make show it beside the label) and never more
    than the last 4 characters. A key too short to show any of gets a fingerprint instead, so
    two connections can still be told apart."""
    if len(api_key) >= 12:
        return f"key …{api_key[-4:]}"
    return f"key #{hashlib.sha256(api_key.encode()).hexdigest()[:6]}"


def _fernet_key(secret: str) -> bytes:
    # Derive a Fernet key from SECRET_KEY (HKDF-like single expansion with a fixed label).
    digest = hmac.new(secret.encode(), b"tiktok-following/api-key-encryption/v1", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest)


class KeyVault:
    """Encrypts stored API keys with a key derived from SECRET_KEY.

    Rotation: set SECRET_KEY to the new value and OLD_SECRET_KEYS to the old ones
    (comma separated); decryption tries every key, encryption uses the new one, and
    `reencrypt` upgrades a stored token (the worker does it when it touches a row).
    """

    def __init__(self, secret_key: str, old_keys: tuple[str, ...] = ()):
        self._fernet = MultiFernet([Fernet(_fernet_key(k)) for k in (secret_key, *old_keys)])

    def encrypt(self, api_key: str) -> str:
        return self._fernet.encrypt(api_key.encode()).decode()

    def decrypt(self, token: str) -> str | None:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            return None

    def reencrypt(self, token: str) -> str:
        return self._fernet.rotate(token.encode()).decode()
