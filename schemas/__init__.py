"""Marshmallow schemas: declared once, used to validate requests, to serialize
answers, to build the OpenAPI document, and to check the Zapier/Make manifests."""
