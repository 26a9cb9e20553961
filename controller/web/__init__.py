"""The dashboard and ``/metrics`` of ``rolecall controller --http`` (the ``web`` extra).

Read-only by construction: every route answers GET, and nothing here can enqueue, cancel or
change a baseline. What the pages show is read through ``model.py``, from the same storage
the CLI reads, with listings cached for a few seconds (``cache.py``) so a refresh storm does
not multiply storage transactions. Only ``app.py`` and ``server.py`` import the web
libraries; the worker never imports this package.
"""
