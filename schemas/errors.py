from marshmallow import Schema, fields


class ErrorSchema(Schema):
    """The body of every error answer."""

    error = fields.String(required=True, metadata={"description": "A sentence a no-code user can act on"})
    code = fields.String(required=True, metadata={"description": "Stable snake_case code"})
    fields_ = fields.Dict(data_key="fields", metadata={"description": "Per-field messages (validation errors only)"})
