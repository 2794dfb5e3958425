from marshmallow import Schema, fields


class AuthTestSchema(Schema):
    ok = fields.Boolean(required=True)
    label = fields.String(required=True, metadata={"description": "Connection label; shows at most the key's last 4 characters"})
    cached = fields.Boolean(metadata={"description": "True when a recent successful check was reused (no credit spent)"})
