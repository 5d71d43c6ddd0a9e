"""The ASGI entry point uvicorn imports: ``nestpoint.api.asgi:app``."""

from nestpoint.api.app import create_app

app = create_app()
