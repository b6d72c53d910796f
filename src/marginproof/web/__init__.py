"""Web console (shell): static front end and the small JSON/WebSocket API it needs.

The console is served by the service's own FastAPI app (``marginproof serve``): the router of
:mod:`marginproof.web.router` is included by :func:`marginproof.service.app.create_app`. The front
end is hand-written ES modules and CSS in ``static/`` (no build step, no CDN); see ``docs/web.md``.
"""
