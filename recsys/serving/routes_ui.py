"""The pages: the storefront (``/ui/``), the operations view (``/ui/ops``), their static
files (``/ui/static/``, shipped in the package), and the HTML reports of the served model's
lineage (``/ui/reports/<step>/<path>``: only files its manifests list, read from the lake).

The pages are plain HTML + JavaScript calling the public API (no build step, no framework);
the API key for writes is typed into the page and kept in the tab's ``sessionStorage``,
never written into the HTML. A strict Content-Security-Policy allows the server's own
scripts and styles only; lake reports are served sandboxed (an opaque origin: they cannot
read the page's storage)."""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from recsys.errors import InputError
from recsys.serving.context import ServerContext
from recsys.serving.lineage import report_file
from recsys.storage import read_bytes

UI_DIR = Path(__file__).parent / "ui"
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
REPORT_CSP = "sandbox allow-scripts allow-popups"


def add_ui_routes(app: FastAPI, ctx: ServerContext) -> None:
    def page(name: str) -> FileResponse:
        return FileResponse(
            UI_DIR / name,
            media_type="text/html",
            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
        )

    @app.get("/ui", include_in_schema=False)
    async def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @app.get("/ui/", include_in_schema=False)
    async def storefront() -> FileResponse:
        return page("index.html")

    @app.get("/ui/ops", include_in_schema=False)
    async def ops() -> FileResponse:
        return page("ops.html")

    @app.get("/ui/reports/{step}/{path:path}", include_in_schema=False)
    async def report(step: str, path: str) -> Response:
        e = ctx.engine()
        steps = await ctx.lineage.get(e.uri, e.manifest_sha)
        try:
            uri = report_file(steps, step, path)
            data = await asyncio.to_thread(read_bytes, uri)
        except InputError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        except OSError as exc:
            raise HTTPException(
                status_code=502, detail=f"{step}/{path}: the lake did not answer: {exc}"
            ) from None
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return Response(
            data,
            media_type=kind,
            headers={"Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff"},
        )

    app.mount("/ui/static", StaticFiles(directory=UI_DIR / "static"), name="ui-static")
