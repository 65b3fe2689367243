"""The REST controller."""

from hpscape.service.api.app import create_app

__all__ = ["create_app"]
