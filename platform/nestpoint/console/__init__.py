"""The HQ and store console: people (not API keys) at HQ and in the stores, in the browser.

Served by the API's application under ``/console/`` (docs/console.md). ``service.py`` holds
the users, their passwords and their sessions; ``web.py`` the session middleware, CSRF,
login throttling, templates and translations; ``pages.py`` the pages, which call the
other contexts' services directly (as the API's routes do), acting as the user's
:class:`~nestpoint.context.Actor`.
"""
