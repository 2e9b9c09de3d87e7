"""The labelling page: a Starlette app served by uvicorn, on 127.0.0.1 unless told otherwise.

``GET /`` the page, ``GET /page.js`` its script, ``GET /api/state`` the sample with this
auditor's labels and the running figures, ``POST /api/label`` one label. Every row text is
untrusted model output: the script puts it in the page as text (``textContent``), never as
HTML, and a Content-Security-Policy forbids inline scripts besides. The API answers only
requests carrying the session's token, which the page reads from its own HTML, so another
site open in the same browser cannot post labels to it.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from pipeline.auditing.sample import AuditError
from pipeline.auditing.session import AuditSession

HERE = Path(__file__).parent
TOKEN_HEADER = "X-Audit-Token"
CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'"


def create_app(session: AuditSession, token: str | None = None) -> Starlette:
    token = token or secrets.token_hex(16)
    page = (HERE / "page.html").read_text(encoding="utf-8").replace("{{TOKEN}}", token)
    script = (HERE / "page.js").read_text(encoding="utf-8")

    def authorised(request: Request) -> bool:
        return secrets.compare_digest(request.headers.get(TOKEN_HEADER, ""), token)

    async def index(_: Request) -> Response:
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP})

    async def page_js(_: Request) -> Response:
        return Response(script, media_type="text/javascript")

    async def state(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"error": "missing or wrong token"}, status_code=403)
        return JSONResponse({"run": session.run_dir.name, "auditor": session.auditor,
                             "seed": session.sample.seed, **session.state()})

    async def label(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"error": "missing or wrong token"}, status_code=403)
        body: Any = await request.json()
        if not isinstance(body, dict):
            return JSONResponse({"error": "send a JSON object {id, label, note}"}, status_code=400)
        try:
            figures = session.add_label(str(body.get("id")), str(body.get("label")),
                                        str(body.get("note") or ""))
        except AuditError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"figures": figures})

    return Starlette(routes=[Route("/", index), Route("/page.js", page_js), Route("/api/state", state),
                             Route("/api/label", label, methods=["POST"])])


def serve(session: AuditSession, host: str, port: int, open_browser: bool) -> None:
    """Serve until Ctrl-C; then write summary.json and report.html."""
    import threading
    import webbrowser

    import uvicorn

    with socket.socket() as probe:  # a clear line instead of uvicorn's bind traceback
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise AuditError(f"--port {port} on {host}: cannot listen there ({exc.strerror}); pass "
                             f"another --port") from None
    url = f"http://{host}:{port}/"
    print(f"auditing {session.run_dir} ({len(session.sample.ids)} rows, seed {session.sample.seed}): {url}"
          f"  (Ctrl-C to stop)", flush=True)
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    try:
        uvicorn.run(create_app(session), host=host, port=port, log_level="warning")
    finally:
        session.publish()
