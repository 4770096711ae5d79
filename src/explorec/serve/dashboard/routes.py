"""``/dashboard``: server-rendered pages (Jinja2) with plotly charts, and their data as JSON.

Access follows the API's scopes: a read key views (write and admin keys include read); nothing
here writes. A browser gives its key once, on the login page or as ``?api_key=`` (answered
with a redirect to the same page without it), and keeps it in an ``HttpOnly``,
``SameSite=Strict`` cookie limited to ``/dashboard``; scripts and API clients may send
``X-API-Key`` instead. Without a key a page answers 401 with the login form; the JSON
endpoints answer 401 with the API's error body. With no keys configured at all, loopback
callers are answered without one (as by the API). User ids travel in query strings
(``/dashboard/users?user=...``), which the access log drops.

Every page sends a strict Content-Security-Policy (scripts only from ``/dashboard/static``:
plotly.js from the installed plotly package, no CDN; chart data in inert JSON blocks), refuses
framing and is not cached. Store reads and computation run in a worker thread.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import json
from collections.abc import Callable
from importlib import resources
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from explorec.ids import MAX_ID_LENGTH, id_problem, text_problem
from explorec.serve.api.deps import _check, scope_of
from explorec.serve.dashboard import charts, data
from explorec.serve.errors import ServiceError

router = APIRouter(prefix="/dashboard", include_in_schema=False)

COOKIE = "explorec_dashboard_key"
COOKIE_MAX_AGE = 12 * 3600
Window = Literal["1h", "24h", "7d", "30d"]

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
NO_STORE = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
PAGES = [("overview", "Overview", "/dashboard"), ("policies", "Policies", "/dashboard/policies"),
         ("users", "Users", "/dashboard/users"), ("items", "Items", "/dashboard/items")]


# ------------------------------------------------------------------ rendering
@functools.cache
def _env() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("explorec.serve.dashboard", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = _num
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * v:.1f}%"
    env.filters["dur"] = _duration
    env.filters["plain"] = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    env.filters["when"] = lambda v: "–" if not v else v.replace("T", " ").replace("Z", " UTC")
    return env


def _num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = float(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(s) >= size:
            return f"{s / size:.1f} {unit}"
    return f"{s:.1f} s"


def _figure_json(fig: dict[str, Any] | None) -> str | None:
    """JSON for an inert ``<script type="application/json">`` block (``<``, ``>``, ``&`` escaped,
    so no text in the data can close the block)."""
    if fig is None:
        return None
    text = json.dumps(fig, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    from markupsafe import Markup

    figures = {name: (None if fig is None else Markup(_figure_json(fig)))
               for name, fig in ctx.pop("figures", {}).items()}
    ctx.setdefault("active", "")
    html = _env().get_template(template).render(
        pages=PAGES, plotly_js=_plotly_name(), figures=figures, request_path=request.url.path, **ctx)
    return HTMLResponse(html, status_code=status, headers=NO_STORE)


# ------------------------------------------------------------------ keys
def _cookie_key(request: Request) -> str | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        return base64.urlsafe_b64decode(raw.encode("ascii") + b"=" * (-len(raw) % 4)).decode("utf-8")
    except (ValueError, UnicodeError):
        return None


def _request_key(request: Request) -> str | None:
    return request.headers.get("x-api-key") or _cookie_key(request)


def _set_key(resp: Response, request: Request, key: str) -> None:
    value = base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii").rstrip("=")
    resp.set_cookie(COOKIE, value, max_age=COOKIE_MAX_AGE, path="/dashboard", httponly=True,
                    samesite="strict", secure=request.url.scheme == "https")


def _readable(request: Request, key: str | None) -> bool:
    try:
        _check(request, key, "read")
    except ServiceError:
        return False
    return True


def _safe_next(target: str | None) -> str:
    """Only paths of the dashboard itself (no scheme, host or ``//``): never an open redirect."""
    if not target:
        return "/dashboard"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/dashboard") or "\\" in target:
        return "/dashboard"
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _without_key(request: Request) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "api_key"]
    return request.url.path + (f"?{urlencode(query)}" if query else "")


def _login(request: Request, status: int, message: str | None) -> HTMLResponse:
    return _render(request, "login.html", status=status, message=message, next=_without_key(request),
                   keyless=not request.app.state.service.config.auth_enabled)


async def _page(request: Request, template: str, build: Callable[[], dict[str, Any]],
                figures: Callable[[dict[str, Any]], dict[str, Any]], **ctx: Any) -> Response:
    """Authorise (header, cookie or a one-time ``?api_key=``), build the data in a worker
    thread, render."""
    once = request.query_params.get("api_key")
    if once is not None:
        if not _readable(request, once):
            return _login(request, 401, "That key cannot read this service.")
        resp = RedirectResponse(_without_key(request), status_code=303, headers=NO_STORE)
        _set_key(resp, request, once)
        return resp
    try:
        _check(request, _request_key(request), "read")
    except ServiceError as e:
        return _login(request, e.status, None if e.status == 401 and not _request_key(request)
                      else "That key cannot read this service.")
    payload = await run_in_threadpool(build)
    return _render(request, template, data=payload, figures=figures(payload), **ctx)


def _api(request: Request) -> None:
    _check(request, _request_key(request), "read")


def _check_id(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    problem = id_problem(value)
    if problem:
        raise ServiceError(f"{field} {problem}", field, 422)
    return value


def _check_query(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > MAX_ID_LENGTH or text_problem(value):
        raise ServiceError(f"q must be at most {MAX_ID_LENGTH} characters of text", "q", 422)
    return value.strip()


# ------------------------------------------------------------------ login
@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    return _render(request, "login.html", message=None, next=_safe_next(next),
                   keyless=not request.app.state.service.config.auth_enabled)


@router.post("/login")
async def login(request: Request) -> Response:
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
        return _render(request, "login.html", status=403, message="Cross-site login refused.",
                       next="/dashboard", keyless=False)
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=4)
    key = (form.get("api_key") or [""])[0]
    target = _safe_next((form.get("next") or [None])[0])
    service = request.app.state.service
    if service.config.auth_enabled and scope_of(service, key) is None:
        return _render(request, "login.html", status=401, message="Unknown key.", next=target, keyless=False)
    resp = RedirectResponse(target, status_code=303, headers=NO_STORE)
    if service.config.auth_enabled:
        _set_key(resp, request, key)
    return resp


@router.post("/logout")
async def logout() -> Response:
    resp = RedirectResponse("/dashboard/login", status_code=303, headers=NO_STORE)
    resp.delete_cookie(COOKIE, path="/dashboard", httponly=True, samesite="strict")
    return resp


# ------------------------------------------------------------------ pages
def _overview_figures(o: dict[str, Any]) -> dict[str, Any]:
    return {"traffic": charts.traffic(o), "ctr": charts.ctr(o), "propensity": charts.propensities(o),
            "latency": charts.latency(o)}


@router.get("")
async def overview_page(request: Request, window: Window = data.DEFAULT_WINDOW) -> Response:
    reg = request.app.state.metrics.registry
    return await _page(request, "overview.html",
                       lambda: data.overview(request.app.state.service, reg, window), _overview_figures,
                       active="overview", windows=list(data.WINDOWS), window=window)


@router.get("/policies")
async def policies_page(request: Request) -> Response:
    service = request.app.state.service
    return await _page(request, "policies.html", lambda: data.policies(service, _ope_cache(request)),
                       lambda p: {"ope": charts.ope(p)}, active="policies")


@router.get("/users")
async def users_page(request: Request, user: str | None = None, q: str | None = None) -> Response:
    service = request.app.state.service
    user, q = _check_id(user, "user"), _check_query(q)

    def build() -> dict[str, Any]:
        out: dict[str, Any] = {"query": q, "matches": data.find_users(service, q) if q else []}
        if user is not None:
            out["user"] = data.user(service, user)
        return out

    def figs(d: dict[str, Any]) -> dict[str, Any]:
        if "user" not in d:
            return {}
        return {"slate": charts.slate(d["user"]), "activity": charts.user_activity(d["user"]),
                "interests": charts.user_interests(d["user"])}

    return await _page(request, "users.html", build, figs, active="users")


@router.get("/items")
async def items_page(request: Request, item: str | None = None, q: str | None = None,
                     window: Window = data.DEFAULT_WINDOW) -> Response:
    service = request.app.state.service
    item, q = _check_id(item, "item"), _check_query(q)

    def build() -> dict[str, Any]:
        out = data.item(service, item, window)
        out.update(query=q, matches=data.find_items(service, q) if q else [])
        return out

    def figs(d: dict[str, Any]) -> dict[str, Any]:
        out = {"first_clicks": charts.first_clicks(d)}
        if "item" in d:
            out["activity"] = charts.item_activity(d)
        return out

    return await _page(request, "items.html", build, figs, active="items", windows=list(data.WINDOWS),
                       window=window)


def _ope_cache(request: Request) -> data.OpeCache:
    cache = getattr(request.app.state, "dashboard_ope", None)
    if cache is None:
        cache = request.app.state.dashboard_ope = data.OpeCache()
    return cache


# ------------------------------------------------------------------ JSON
def _json(payload: dict[str, Any]) -> JSONResponse:
    return JSONResponse(payload, headers=NO_STORE)


@router.get("/api/overview")
async def overview_json(request: Request, window: Window = data.DEFAULT_WINDOW) -> JSONResponse:
    _api(request)
    reg = request.app.state.metrics.registry
    return _json(await run_in_threadpool(data.overview, request.app.state.service, reg, window))


@router.get("/api/policies")
async def policies_json(request: Request) -> JSONResponse:
    _api(request)
    return _json(await run_in_threadpool(data.policies, request.app.state.service, _ope_cache(request)))


@router.get("/api/users")
async def users_json(request: Request, user: str | None = None, q: str | None = None) -> JSONResponse:
    _api(request)
    service = request.app.state.service
    user, q = _check_id(user, "user"), _check_query(q)
    if user is None and q is None:
        raise ServiceError("give user=ID or q=PREFIX", "user", 422)
    if user is None:
        return _json({"query": q, "matches": await run_in_threadpool(data.find_users, service, q)})
    return _json(await run_in_threadpool(data.user, service, user))


@router.get("/api/items")
async def items_json(request: Request, item: str | None = None, q: str | None = None,
                     window: Window = data.DEFAULT_WINDOW) -> JSONResponse:
    _api(request)
    service = request.app.state.service
    item, q = _check_id(item, "item"), _check_query(q)
    if q is not None:
        return _json({"query": q, "matches": await run_in_threadpool(data.find_items, service, q)})
    return _json(await run_in_threadpool(data.item, service, item, window))


# ------------------------------------------------------------------ static
@functools.cache
def _plotly() -> tuple[str, bytes, bytes, str]:
    """(file name, script, gzipped script, etag) of the plotly.js the installed package carries."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    body = get_plotlyjs().encode("utf-8")
    name = f"plotly-{get_plotlyjs_version()}.min.js"
    return name, body, gzip.compress(body, 6, mtime=0), hashlib.sha256(body).hexdigest()[:16]


def _plotly_name() -> str:
    from plotly.offline import get_plotlyjs_version

    return f"plotly-{get_plotlyjs_version()}.min.js"


STATIC_FILES = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}


@functools.cache
def _static(name: str) -> tuple[bytes, str]:
    body = resources.files("explorec.serve.dashboard").joinpath("static", name).read_bytes()
    return body, hashlib.sha256(body).hexdigest()[:16]


@router.get("/static/{name}")
async def static(request: Request, name: Annotated[str, PathParam(max_length=64)]) -> Response:
    headers = {**SECURITY_HEADERS}
    if name == _plotly_name():
        _, body, gz, etag = await run_in_threadpool(_plotly)
        headers.update({"Cache-Control": "public, max-age=31536000, immutable", "ETag": f'"{etag}"',
                        "Vary": "Accept-Encoding"})
        if request.headers.get("if-none-match") == f'"{etag}"':
            return Response(status_code=304, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(gz, media_type="text/javascript; charset=utf-8",
                            headers={**headers, "Content-Encoding": "gzip"})
        return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)
    if name in STATIC_FILES:
        body, etag = _static(name)
        headers.update({"Cache-Control": "public, max-age=3600", "ETag": f'"{etag}"'})
        if request.headers.get("if-none-match") == f'"{etag}"':
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=STATIC_FILES[name], headers=headers)
    return JSONResponse({"error": f"no static file {name!r}", "field": "name"}, status_code=404,
                        headers=headers)

