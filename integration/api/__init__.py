"""HTTP layer: flask-smorest blueprints, one per area."""
from __future__ import annotations

import flask_smorest
from flask import current_app, g, request
from flask_smorest.arguments import ArgumentsMixin

from integration import authcheck, errors
from integration.services import Services


def services() -> Services:
    return current_app.extensions["tiktok_following"]


def api_key() -> str:
    """The caller's DumplingAI key from `Authorization: Bearer <key>`; never logged."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or len(key) > 512:
        raise errors.missing_key()
    svc = services()
    g.owner_hash = svc.owner(key)
    authcheck.refuse_if_known_bad(svc, g.owner_hash, request.remote_addr)  # recently refused: no upstream call
    return key



class _Parser(ArgumentsMixin.ARGUMENTS_PARSER.__class__):
    DEFAULT_VALIDATION_STATUS = 400  # CONTRACT.md: failed validation is a 400, not webargs' 422


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = _Parser()


class Api(flask_smorest.Api):
    def __init__(self, *args, **kwargs):
        from schemas.errors import ErrorSchema

        self.ERROR_SCHEMA = ErrorSchema  # documents our {"error", "code"} body for every error status
        super().__init__(*args, **kwargs)
