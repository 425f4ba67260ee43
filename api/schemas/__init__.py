"""Marshmallow schemas of every request and response of the JSON API (one module per resource)."""
