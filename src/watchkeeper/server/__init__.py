"""HTTP server: ``watchkeeper serve`` (FastAPI + uvicorn). Needs the ``server`` extra."""

from watchkeeper.server.app import create_app
from watchkeeper.server.auth import Tokens

__all__ = ["Tokens", "create_app"]
