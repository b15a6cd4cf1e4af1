"""The ASGI app: HTTP routes, the /ws endpoint, and the uvicorn fast path."""
