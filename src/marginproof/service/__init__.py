"""The HTTP/WebSocket service and its runtime shell (input gateway, engine runners).

Build it with :func:`marginproof.bootstrap.bootstrap` and
:func:`marginproof.service.app.create_app`; run it with ``marginproof serve``.
"""
