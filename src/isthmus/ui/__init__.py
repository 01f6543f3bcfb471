"""The dashboard at /ui/: server-rendered pages over what the API already knows, live by server-sent events.

```
 browser ── GET /ui/<page> ──► routes.py ── session.py (the bearer token, from its cookie)
    │                              └─► views.py (State, Principal) ──► a dict per page ──► templates/ (Jinja2)
    └── EventSource /ui/live?page=<page> ─► the page's live part again after every write (Notifier.listen)
```

The same rule as the API: an operator token sees the fabric, a tenant token only its own subscription, and
anything else is the 404 page. No build step: the CSS and the small script in static/ are ours.
"""
