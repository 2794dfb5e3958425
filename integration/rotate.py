"""SECRET_KEY rotation: `python -m integration.rotate`, and the per-key adoption behind it.

SECRET_KEY keys two things: the owner hash (HMAC of the API key) that scopes watches,
subscriptions and auth checks, and the Fernet encryption of stored API keys and webhook
signing secrets. Rotating (README, "Keys at rest"): set the new SECRET_KEY, put the old one
in OLD_SECRET_KEYS, restart, then run this command once.

- Encrypted values (`watches.api_key_enc`, `subscriptions.secret_enc`) are re-encrypted
  under the new key by the command, all at once.
- An owner hash can only be recomputed from the API key itself. The command does it for
  every watch that stores its key (all watches with subscriptions); every other row of
  that owner moves with it. What remains (trigger-only watches, whose key is never stored)
  moves the first time its user calls while OLD_SECRET_KEYS is still set (`adopt_owner`,
  from `Services.owner`). After OLD_SECRET_KEYS is dropped such a watch is not found any
  more: its user's next trigger call takes a new baseline, and the old row is deleted as
  idle after WATCH_IDLE_DAYS.
"""
from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from cryptography.fernet import InvalidToken
from sqlalchemy import delete, select, update

from integration.db import transaction
from integration.models import AuthCheck, Subscription, Watch
from integration.security import key_hash

if TYPE_CHECKING:
    from integration.services import Services


def adopt_owner(svc: "Services", api_key: str, owner: str) -> int:
    """Move the rows stored under this key's hash with an old secret to `owner` (its hash
    with the current one), re-encrypting their secrets on the way. Returns the watches moved.

    A watch whose handle the owner already has under the new hash (only possible if an old
    process wrote during the rollout) stays where it is, with its subscriptions."""
    old = [h for h in (key_hash(k, api_key) for k in svc.settings.old_secret_keys) if h != owner]
    if not old:
        return 0
    with svc.sessions() as session:  # a read first: most callers have nothing to move
        if session.scalar(select(Watch.id).where(Watch.owner_hash.in_(old)).limit(1)) is None and \
                session.scalar(select(AuthCheck.owner_hash).where(AuthCheck.owner_hash.in_(old)).limit(1)) is None:
            return 0
    moved = 0
    with transaction(svc.sessions) as session:
        taken = set(session.scalars(select(Watch.handle).where(Watch.owner_hash == owner)))
        for watch in session.scalars(select(Watch).where(Watch.owner_hash.in_(old))):
            if watch.handle in taken:
                continue
            taken.add(watch.handle)
            watch.owner_hash = owner
            if watch.api_key_enc is not None:
                watch.api_key_enc = svc.vault.encrypt(api_key)
            for sub in session.scalars(select(Subscription).where(Subscription.watch_id == watch.id)):
                sub.owner_hash = owner
                sub.secret_enc = _reencrypted(svc, sub.secret_enc)
            moved += 1
        # A passed auth check stays passed: keep the newest one under the new hash.
        checks = session.scalars(select(AuthCheck).where(AuthCheck.owner_hash.in_([owner, *old]))
                                 .order_by(AuthCheck.checked_at.desc())).all()
        if checks and checks[0].owner_hash != owner:
            newest = checks[0].checked_at
            session.execute(delete(AuthCheck).where(AuthCheck.owner_hash.in_([owner, *old])))
            session.add(AuthCheck(owner_hash=owner, checked_at=newest))
        elif checks:
            session.execute(delete(AuthCheck).where(AuthCheck.owner_hash.in_(old)))
    return moved


def _reencrypted(svc: "Services", token: str) -> str:
    try:
        return svc.vault.reencrypt(token)
    except InvalidToken:
        return token  # under none of the secrets: nothing to gain; the worker reports it when sending


def rotate_all(svc: "Services") -> dict:
    """Everything that can be moved to the current SECRET_KEY, at once. Idempotent."""
    report = {"watches_rehashed": 0, "api_keys_reencrypted": 0, "secrets_reencrypted": 0, "unreadable": 0,
              "watches_without_stored_key": 0}
    with svc.sessions() as session:
        keyed = session.execute(select(Watch.id, Watch.owner_hash, Watch.api_key_enc)
                                .where(Watch.api_key_enc.is_not(None))).all()
    for watch_id, owner_hash, token in keyed:
        api_key = svc.vault.decrypt(token)
        if api_key is None:
            report["unreadable"] += 1
            continue
        owner = key_hash(svc.settings.secret_key, api_key)
        if owner_hash != owner:
            report["watches_rehashed"] += adopt_owner(svc, api_key, owner)
        with transaction(svc.sessions) as session:
            # Only if unchanged meanwhile (a user who reconnected has just written a new token).
            session.execute(update(Watch).where(Watch.id == watch_id, Watch.api_key_enc == token)
                            .values(api_key_enc=svc.vault.encrypt(api_key))
                            .execution_options(synchronize_session=False))
        report["api_keys_reencrypted"] += 1
    with svc.sessions() as session:
        secrets_ = session.execute(select(Subscription.id, Subscription.secret_enc)).all()
    for sub_id, token in secrets_:
        try:
            fresh = svc.vault.reencrypt(token)
        except InvalidToken:
            report["unreadable"] += 1
            continue
        with transaction(svc.sessions) as session:
            session.execute(update(Subscription).where(Subscription.id == sub_id, Subscription.secret_enc == token)
                            .values(secret_enc=fresh).execution_options(synchronize_session=False))
        report["secrets_reencrypted"] += 1
    # Watches without a stored key cannot be told apart (old or new hash) without the key.
    with svc.sessions() as session:
        report["watches_without_stored_key"] = len(session.scalars(
            select(Watch.id).where(Watch.api_key_enc.is_(None))).all())
    return report


def main() -> int:
    from integration.config import Settings
    from integration.services import Services

    settings = Settings.from_env()
    if not settings.old_secret_keys:
        print("OLD_SECRET_KEYS is empty: set it to the previous SECRET_KEY(s) first (see README).", file=sys.stderr)
        return 2
    svc = Services.build(settings)
    try:
        print(json.dumps(rotate_all(svc)))
    finally:
        svc.client.close()
        svc.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
