"""`humback view RUN_DIR`: a local web app over a run, served on 127.0.0.1 by default.

FastAPI serves one static page (viewer/static/index.html) and a small JSON API over RunData; the page
pages, sorts and filters on the server, so a 500k-candidate run stays fast. Read-only: nothing here
writes into the run folder. Every text the page shows is untrusted (segments are web text, instructions
are model output): the page sets it as text, never as HTML, and the responses carry a Content-Security-
Policy that allows no script but the page's own.
"""

from __future__ import annotations

import math
import threading
from importlib import resources
from pathlib import Path

from humback.errors import HumbackError
from humback.records import RecordError
from humback.rundir import RunDir
from humback.viewer.data import RunData, RunFileError, ViewerError
from humback.viewer.data import curves as run_curves
from humback.viewer.data import evaluation as run_evaluation

# The page's own script only; no inline handlers, no remote anything.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
    " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


LOOPBACK = ("127.0.0.1", "localhost", "::1")
BIG = 2**62  # offsets and limits past this are no request a page makes


def allowed_hosts(host: str) -> list[str]:
    """Host headers the viewer answers: the names of the address it is bound to. Any other name (a web page
    that rebinds its own domain to 127.0.0.1) is refused, so no site can read the run through the browser."""
    if host in ("0.0.0.0", "::", ""):  # every interface: the user chose to serve the network (warned)
        return ["*"]
    names = list(LOOPBACK) if host in LOOPBACK else [host]
    return names + [f"[{n}]" for n in names if ":" in n]


def finite(value):
    """`value` with NaN and infinities as null: JSON has no such numbers (a hand-edited or foreign run file
    may hold them), and a response must never fail to serialise."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def create_app(run_dir: str | Path, host: str = "127.0.0.1"):
    from fastapi import FastAPI, HTTPException, Query
    from fastapi import Path as Path_
    from fastapi.responses import FileResponse, JSONResponse
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    class FiniteJSON(JSONResponse):
        def render(self, content) -> bytes:
            return super().render(finite(content))

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
    app = FastAPI(
        title="humback viewer",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        default_response_class=FiniteJSON,
    )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host))

    @app.middleware("http")
    async def headers(request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(HumbackError)
    async def not_here(request, exc: HumbackError):
        # A run file that cannot be read is the run's problem, not the server's: 422 naming the file.
        status = (
            422
            if isinstance(exc, (RunFileError, RecordError))
            else 404
            if isinstance(exc, ViewerError)
            else 500
        )
        return JSONResponse({"error": str(exc)}, status_code=status)

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
    def candidates(
        iteration: int | None = Query(None, ge=0, le=1000),
        sort: str = "id",
        desc: bool = False,
        min_score: float | None = Query(None, ge=-1e300, le=1e300),
        max_score: float | None = Query(None, ge=-1e300, le=1e300),
        selected: bool | None = None,
        skipped: str | None = Query(None, max_length=100),
        q: str | None = Query(None, max_length=200),
        rewrite: str | None = Query(None, max_length=40),
        offset: int = Query(0, ge=0, le=BIG),
        limit: int = Query(50, ge=1, le=BIG),
    ):
        return data().page(
            iteration, sort, desc, min_score, max_score, selected, skipped, q, offset, limit, rewrite
        )

    @app.get("/api/candidates/{row_id}")
    def candidate(row_id: str):
        return data().row(row_id)

    @app.get("/api/diff/{iteration}")
    def diff(iteration: int = Path_(ge=0, le=1000)):
        return data().diff(iteration)

    @app.get("/api/histogram/{iteration}")
    def histogram(iteration: int = Path_(ge=0, le=1000), signal: str = "score"):
        return data().histogram(iteration, signal)

    @app.get("/api/lengths/{iteration}")
    def lengths(iteration: int = Path_(ge=0, le=1000)):
        return data().lengths(iteration)

    # These two read their own files, not the run's rows: they work while the rows cannot be read.
    @app.get("/api/curves")
    def curves():
        return run_curves(RunDir(run_dir))

    @app.get("/api/eval")
    def evaluation():
        return run_evaluation(RunDir(run_dir))

    return app


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8765) -> None:
    import uvicorn

    RunDir(run_dir).read_manifest()  # not a run folder: say so now, not in the browser
    app = create_app(run_dir, host)
    print(f"[humback] viewing {run_dir} at http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
