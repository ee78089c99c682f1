"""`humback view RUN_DIR`: a local web app over a run, served on 127.0.0.1 by default.

FastAPI serves one static page (viewer/static/index.html) and a small JSON API over RunData; the page
pages, sorts and filters on the server, so a 500k-candidate run stays fast. Read-only: nothing here
writes into the run folder. Every text the page shows is untrusted (segments are web text, instructions
are model output): the page sets it as text, never as HTML, and the responses carry a Content-Security-
Policy that allows no script but the page's own.
"""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path

from humback.errors import HumbackError
from humback.rundir import RunDir
from humback.viewer.data import RunData, ViewerError

# The page's own script only; no inline handlers, no remote anything.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
       " base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def create_app(run_dir: str | Path):
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import FileResponse, JSONResponse

    # The run is read in the background (the first time, a large run takes seconds): the page is served
    # at once and every API request waits for the data.
    loaded, holder = threading.Event(), {}

    def load() -> None:
        try:
            holder["data"] = RunData(run_dir)
        except Exception as e:  # noqa: BLE001 (shown to every request instead)
            holder["error"] = e
        loaded.set()

    threading.Thread(target=load, daemon=True).start()

    def data() -> RunData:
        loaded.wait()
        if "error" in holder:
            raise holder["error"]
        return holder["data"]

    static = Path(str(resources.files("humback.viewer") / "static"))
    app = FastAPI(title="humback viewer", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def headers(request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(HumbackError)
    async def not_here(request, exc: HumbackError):
        return JSONResponse({"error": str(exc)}, status_code=404 if isinstance(exc, ViewerError) else 500)

    @app.get("/")
    def page():
        return FileResponse(static / "index.html", media_type="text/html")

    @app.get("/static/{name}")
    def asset(name: str):
        path = static / name
        if name not in {"viewer.js", "viewer.css"} or not path.is_file():
            raise HTTPException(404)
        return FileResponse(path, media_type="text/javascript" if name.endswith(".js") else "text/css")

    @app.get("/api/funnel")
    def funnel():
        return data().funnel()

    @app.get("/api/candidates")
    def candidates(iteration: int | None = None, sort: str = "id", desc: bool = False,
                   min_score: float | None = None, max_score: float | None = None, selected: bool | None = None,
                   skipped: str | None = None, q: str | None = Query(None, max_length=200), offset: int = 0,
                   limit: int = 50):
        return data().page(iteration, sort, desc, min_score, max_score, selected, skipped, q, offset, limit)

    @app.get("/api/candidates/{row_id}")
    def candidate(row_id: str):
        return data().row(row_id)

    @app.get("/api/diff/{iteration}")
    def diff(iteration: int):
        return data().diff(iteration)

    @app.get("/api/histogram/{iteration}")
    def histogram(iteration: int, signal: str = "score"):
        return data().histogram(iteration, signal)

    @app.get("/api/lengths/{iteration}")
    def lengths(iteration: int):
        return data().lengths(iteration)

    @app.get("/api/curves")
    def curves():
        return data().curves()

    @app.get("/api/eval")
    def evaluation():
        return data().evaluation()

    return app


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8765) -> None:
    import uvicorn

    RunDir(run_dir).read_manifest()  # not a run folder: say so now, not in the browser
    app = create_app(run_dir)
    print(f"[humback] viewing {run_dir} at http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
