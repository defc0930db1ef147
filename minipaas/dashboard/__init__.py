"""The web dashboard (issue 21): a Starlette app served by uvicorn on a unix socket behind minipaas' nginx.

A layer of its own at the top, beside cli/: it parses requests and renders pages, and asks the layers below
for everything it shows or does, through the functions the ssh commands use (apps listing, ps, releases,
report, rollback, restart, scale) and with the same access rules (access/access.check, per request, for the
key the browser's session belongs to: access/sessions.py). Modules: server (the process), web (the app,
its routes and the guards every response passes), auth (sessions and CSRF), views (what each page shows),
pages (read-only pages), actions (POSTs), live (server-sent events).
"""
