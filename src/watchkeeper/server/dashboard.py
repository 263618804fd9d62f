"""The live dashboard: every model at a glance, and one model's recent windows, findings
and open incidents (with diagnosis and actions, to acknowledge or silence from the page).

Pages are plain HTML built here, with every stored or user-provided text escaped; the
windows, findings and metrics are rendered by ``watchkeeper.report``. A small script
(static/dashboard.js, no external resource) refreshes the page's parts in place and calls
the JSON API for acknowledging and silencing. With tokens configured, the pages ask for a
token once and keep a session (auth.py, store/sessions.py); without, they are open, as the API is.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import defaultdict
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from watchkeeper.alerts.advice import incident_views
from watchkeeper.io.times import as_utc
from watchkeeper.report.html import escape
from watchkeeper.server.auth import (
    COOKIE,
    CSRF_HEADER,
    LoginLimiter,
    SessionLookup,
    Tokens,
    same_origin,
)
from watchkeeper.server.hub import Hub
from watchkeeper.store.sessions import close_session, open_session

log = logging.getLogger("watchkeeper.server")
#: windows shown on a model's page unless ?windows= says otherwise
WINDOWS = 24
#: seconds between refreshes unless ?refresh= says otherwise (0: never)
REFRESH = 10
SESSION_HOURS = 12
#: largest login request body read (a token and the page to go back to)
LOGIN_BODY = 64 * 1024
STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
SECURITY_HEADERS = {
    # the report's scoped stylesheet is inline; scripts only from this server, no inline
    # script or event handler, nothing fetched from elsewhere
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' "
    "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make form posts send Origin: null
    "Cache-Control": "no-store",
}


def when(value: datetime | str | None) -> str:
    """A time as people read it, in UTC, to the second."""
    if value is None:
        return "–"
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        value = parsed
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def model_url(model: str, suffix: str = "") -> str:
    return "/dashboard/" + quote(model, safe="") + suffix


def local_path(target: str | None) -> str:
    """Where to go after logging in: a dashboard path of this server, nothing else."""
    if target and re.fullmatch(r"/dashboard(/[^\s\\]*)?(\?[^\s\\]*)?", target) \
            and not target.startswith("//"):
        return target
    return "/dashboard"


def clamp(text: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(high, max(low, int(text))) if text is not None else default
    except ValueError:
        return default


def silence_matchers(alert: dict[str, Any]) -> dict[str, str]:
    """Matchers for exactly one alert (its monitor, column, segment, metric); a value that
    would read as an operator is matched by an escaped regex instead."""
    out = {}
    for label, key in (("alertname", "monitor"), ("column", "column"),
                       ("segment", "segment"), ("metric", "metric")):
        value = alert.get(key) or ""
        out[label] = "=~" + re.escape(value) if value.startswith("~") else "=" + value
    return out


# -- what the pages show ---------------------------------------------------------------------
def overview(hub: Hub) -> list[dict[str, Any]]:
    """Every model the server knows: active suite version, latest window, open incidents."""
    live = hub.states()
    out = []
    for model in sorted(set(hub.store.models()) | set(live)):
        active = hub.store.active_suite(model)
        latest = hub.store.load_windows(model, last=1, profiles=False)
        shown = hub.alert_view(model) if model in live else None
        incidents = [] if shown is None else [
            i for i in shown.alerts.incidents.values() if i.is_open]
        worst = max((i.severity for i in incidents), key=lambda s: s.rank, default=None)
        out.append({"model": model, "version": active.version if active else None,
                    "latest": latest[0] if latest else None, "open": len(incidents),
                    "worst": worst.value if worst else None})
    return out


def open_incidents(hub: Hub, model: str) -> list[dict[str, Any]]:
    """A model's open incidents, newest first, each with its advice (as the API gives)."""
    shown = hub.alert_view(model)
    if shown is None:
        return []
    return incident_views(shown.alerts.incidents.values(), shown.suite.importance,
                          is_open=True)


def recent_windows(hub: Hub, model: str, count: int) -> list[dict[str, Any]]:
    """The latest windows in the JSON shape of ``watchkeeper check``, with their findings."""
    records = hub.store.load_windows(model, last=count, profiles=False)
    if not records:
        return []
    by_start: dict[datetime, list[dict[str, Any]]] = defaultdict(list)
    for f in hub.store.findings(model, since=records[0].start):
        by_start[f.pop("window_start")].append(f)
    return [{"window": f"{r.start.isoformat()}/{r.end.isoformat()}",
             "start": r.start.isoformat(), "end": r.end.isoformat(), "rows": r.rows,
             "findings": by_start.get(r.start, []), "metrics": r.metrics or {}}
            for r in records]


# -- HTML ------------------------------------------------------------------------------------
#: asks for the write token when an action on a model's page needs it
TOKEN_DIALOG = """<dialog id="wk-token"><form method="dialog" class="token-form">
<h2>Write access needed</h2>
<p>Acknowledging and silencing need the server's write token.</p>
<label>Write token <input type="password" name="token" autocomplete="current-password"
 required></label>
<p class="error" id="wk-token-error"></p>
<div class="buttons"><button type="submit" value="ok">Continue</button>
<button type="submit" value="cancel" formnovalidate>Cancel</button></div>
</form></dialog>"""


def page(title: str, content: str, *, status: int = 200, attrs: str = "",
         nav: str = "") -> HTMLResponse:
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/dashboard.css">
<script src="/static/dashboard.js" defer></script>
</head><body{attrs}>
<header class="bar"><a class="brand" href="/dashboard">watchkeeper</a>{nav}
<span class="status" id="wk-status" role="status" aria-live="polite"></span></header>
<main class="dash">
{content}
</main>
{TOKEN_DIALOG if 'data-model=' in attrs else ''}
</body></html>"""
    return HTMLResponse(doc, status_code=status, headers=SECURITY_HEADERS)


def login_page(target: str, error: str | None = None, status: int = 401) -> HTMLResponse:
    problem = f'<p class="error" id="login-error">{escape(error)}</p>' if error else ""
    content = f"""<section class="login">
<h1>Sign in</h1>
<p>This server needs a token. The read token shows the dashboard; the write token also
lets you acknowledge and silence incidents.</p>
{problem}
<form method="post" action="/login" id="login-form">
<input type="hidden" name="next" value="{escape(target)}">
<label>Token <input type="password" name="token" autocomplete="current-password" required
 autofocus></label>
<button type="submit">Sign in</button>
</form></section>"""
    return page("sign in – watchkeeper", content, status=status)


def not_found(what: str) -> HTMLResponse:
    content = (f'<section class="empty"><h1>Not found</h1><p>{escape(what)}</p>'
               '<p><a href="/dashboard">All models</a></p></section>')
    return page("not found – watchkeeper", content, status=404)


def models_fragment(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ('<p class="empty">No models yet. Deploy a suite with <code>watchkeeper deploy'
                '</code> or start the server with <code>--suite MODEL=FILE</code>.</p>')
    lines = []
    for r in rows:
        latest = r["latest"]
        version = f"v{r['version']}" if r["version"] is not None else \
            '<span class="muted">no suite deployed</span>'
        window = (f"{escape(when(latest.start))} <span class=\"muted\">"
                  f"({latest.rows:,} rows, {escape(latest.state)})</span>") if latest else \
            '<span class="muted">no windows yet</span>'
        count = (f'<span class="pill {escape(r["worst"])}">{r["open"]}</span>' if r["open"]
                 else '<span class="pill ok">0</span>')
        name = escape(r["model"])
        lines.append(f'<tr data-model="{name}"><td><a href="{escape(model_url(r["model"]))}">'
                     f"{name}</a></td><td>{version}</td><td>{window}</td>"
                     f'<td class="num">{count}</td></tr>')
    return ('<table class="models"><thead><tr><th>model</th><th>active suite</th>'
            '<th>latest window</th><th class="num">open incidents</th></tr></thead><tbody>'
            + "".join(lines) + "</tbody></table>")


def incidents_fragment(incidents: list[dict[str, Any]]) -> str:
    """Open incidents, one line each with its buttons; the report below has the details."""
    if not incidents:
        return '<p class="empty" id="no-incidents">No open incidents.</p>'
    return ('<ul class="dash-incidents">' + "".join(incident_line(i) for i in incidents)
            + '</ul><p class="note">Likely causes, recommended actions and the alerts of '
            'each incident: <a href="#wk-incidents">Incidents</a> below.</p>')


def incident_line(inc: dict[str, Any]) -> str:
    advice = inc.get("advice") or {}
    alerts = inc.get("alerts") or []
    ident, severity = escape(inc["id"]), escape(inc.get("severity"))
    acked = bool(inc.get("acknowledged"))
    silenced = bool(alerts) and all(a.get("silenced_by") for a in alerts)
    diagnosis = escape(advice.get("diagnosis") or "unknown")
    facts = [f"diagnosis: <b class=\"diagnosis\">{diagnosis}</b>",
             f"opened {escape(when(inc.get('opened_at')))}", f"<code>{ident}</code>"]
    if acked:
        facts.append(f'<span class="acked">acknowledged by '
                     f'{escape(inc.get("acknowledged_by") or "?")}</span>')
    if silenced:
        facts.append('<span class="silenced">silenced</span>')
    silences = escape(json.dumps([{"matchers": silence_matchers(a)} for a in alerts]))
    return (f'<li class="dash-incident {severity}" data-incident="{ident}">'
            f'<span class="pill {severity}">{severity}</span>'
            f'<div class="what"><div class="title">{escape(inc.get("title"))}</div>'
            f'<div class="meta">{" · ".join(facts)}</div></div>'
            '<div class="buttons">'
            f'<button type="button" data-action="ack" data-id="{ident}"{" disabled" * acked}>'
            f'{"Acknowledged" if acked else "Acknowledge"}</button>'
            f'<button type="button" data-action="silence" data-id="{ident}" '
            f'data-silences="{silences}"{" disabled" * silenced}>'
            f'{"Silenced" if silenced else "Silence 2h"}</button></div></li>')


def model_body(hub: Hub, model: str, count: int) -> str:
    """The refreshable part of a model's page: open incidents, then the report."""
    from watchkeeper.report import render

    incidents = open_incidents(hub, model)
    windows = recent_windows(hub, model, count)
    active = hub.store.active_suite(model)
    suite = f"{model} v{active.version}" if active else f"{model} (no suite deployed)"
    if windows:
        try:
            report = render({"suite": suite, "windows": windows},
                            title=f"{model}: recent windows", incidents=incidents,
                            fragment=True)
        except Exception:  # the rest of the page stays useful
            log.exception("rendering the report of model %r failed", model)
            report = ('<p class="empty error" id="report-failed">The windows could not be '
                      "shown (the error is in the server log).</p>")
    else:
        report = ('<p class="empty" id="no-windows">No windows yet: events sent to '
                  f"<code>/v1/models/{escape(quote(model, safe=''))}/events</code> show up here "
                  "once their first window is evaluated.</p>")
    return (f'<section id="incidents"><h2>Open incidents</h2>{incidents_fragment(incidents)}'
            f'</section>\n<section id="windows">{report}</section>')


async def login_body(request: Request) -> bytes | None:
    """A login request's body, or None past LOGIN_BODY bytes (the rest is not read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > LOGIN_BODY:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > LOGIN_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


# -- routes ----------------------------------------------------------------------------------
def add_dashboard(app: FastAPI, hub: Hub, tokens: Tokens,
                  limiter: LoginLimiter | None = None,
                  sessions: SessionLookup | None = None) -> None:
    """Register the dashboard's routes: /, /dashboard, /dashboard/{model} (and /body),
    /login, /logout, /static/{name}. ``limiter`` refuses logins from a client address
    after too many failed ones (none: no limit); ``sessions`` says what a session cookie
    allows (none: a cookie allows nothing)."""

    def allowed(request: Request) -> bool:
        return tokens.check_request(request.headers, request.cookies, request.method,
                                    "read", sessions)[0] == 200

    def here(request: Request) -> str:
        query = f"?{request.url.query}" if request.url.query else ""
        return local_path(request.url.path + query)

    def known(model: str) -> bool:
        return model in hub.models or model in hub.store.models()

    def logout_button(request: Request) -> str:
        if not tokens.enabled or COOKIE not in request.cookies:
            return ""
        return ('<form method="post" action="/logout" class="logout">'
                '<button type="submit">Sign out</button></form>')

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/dashboard", status_code=303)

    @app.get("/dashboard", include_in_schema=False)
    def models_page(request: Request, fragment: bool = False,
                    refresh: str | None = None) -> Response:
        if not allowed(request):
            return Response(status_code=401) if fragment else login_page(here(request))
        table = models_fragment(overview(hub))
        if fragment:
            return HTMLResponse(table, headers=SECURITY_HEADERS)
        seconds = clamp(refresh, REFRESH, 0, 3600)
        content = (f'<h1>Models</h1><div id="models" data-src="/dashboard?fragment=1">{table}'
                   "</div>")
        return page("watchkeeper dashboard", content, attrs=f' data-refresh="{seconds}"',
                    nav=logout_button(request))

    @app.get("/dashboard/{model}", include_in_schema=False)
    def model_page(model: str, request: Request, windows: str | None = None,
                   refresh: str | None = None) -> Response:
        if not allowed(request):
            return login_page(here(request))
        if not known(model):
            return not_found(f"No model named “{model}” on this server.")
        count = clamp(windows, WINDOWS, 1, 1000)
        seconds = clamp(refresh, REFRESH, 0, 3600)
        active = hub.store.active_suite(model)
        version = f"suite v{active.version}" if active else "no suite deployed"
        step = f"{hub.window.total_seconds():g} s windows"
        source = escape(model_url(model, f"/body?windows={count}"))
        content = f"""<h1>{escape(model)}</h1>
<p class="subtitle">{escape(version)} · {escape(step)} · up to {count} windows ·
<a href="/dashboard">all models</a></p>
<div id="body" data-src="{source}">{model_body(hub, model, count)}</div>"""
        return page(f"{model} – watchkeeper", content, nav=logout_button(request),
                    attrs=f' data-refresh="{seconds}" data-model="{escape(model)}"')

    @app.get("/dashboard/{model}/body", include_in_schema=False)
    def model_fragment(model: str, request: Request, windows: str | None = None) -> Response:
        if not allowed(request):
            return Response(status_code=401)
        if not known(model):
            return Response(status_code=404)
        body = model_body(hub, model, clamp(windows, WINDOWS, 1, 1000))
        return HTMLResponse(body, headers=SECURITY_HEADERS)

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str | None = None) -> Response:
        if tokens.enabled and not allowed(request):
            return login_page(local_path(next), status=200)
        return RedirectResponse(local_path(next), status_code=303)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        """Trade a token for a session cookie: a form post (redirects back to the page) or,
        from the page's script, JSON {"token": ...} with X-Watchkeeper: 1. A client address
        with too many failed logins lately is answered 429 with Retry-After, whatever the
        token (it is not even read)."""
        scripted = request.headers.get("content-type", "").startswith("application/json")
        address = request.client.host if request.client else None
        wait = limiter.retry_after(address) if limiter and tokens.enabled else 0.0
        if wait > 0:
            hub.counters["rejected_login_limited"] += 1
            seconds = max(1, math.ceil(wait))
            message = f"too many failed logins from your address: try again in {seconds} s"
            headers = {**SECURITY_HEADERS, "Retry-After": str(seconds)}
            if scripted:
                return JSONResponse({"detail": message}, status_code=429, headers=headers)
            refusal = login_page("/dashboard", message.capitalize() + ".", status=429)
            refusal.headers["Retry-After"] = str(seconds)
            return refusal
        raw = await login_body(request)
        if raw is None:
            return JSONResponse({"detail": f"a login body is at most {LOGIN_BODY} bytes"},
                                status_code=413)
        try:
            if scripted:
                doc = json.loads(raw or b"{}")
                token, target = str(doc.get("token") or ""), "/dashboard"
            else:
                form = parse_qs(raw.decode("utf-8", errors="replace"))
                token = (form.get("token") or [""])[0]
                target = local_path((form.get("next") or [""])[0])
        except (ValueError, AttributeError):
            return JSONResponse({"detail": "send {\"token\": ...}"}, status_code=422)
        if (scripted and request.headers.get(CSRF_HEADER) != "1") or \
                not same_origin(request.headers):
            return JSONResponse({"detail": "a login must come from this server's own page"},
                                status_code=403)
        access = tokens.access(token) if tokens.enabled and token else None
        if tokens.enabled and access is None:
            hub.counters["rejected_auth"] += 1
            if limiter is not None:
                limiter.failed(address)
            if scripted:
                return JSONResponse({"detail": "wrong token"}, status_code=403)
            return login_page(target, "That token is not valid for this server.", status=403)
        if access == "metrics":
            message = "The metrics token only lets Prometheus read /metrics."
            if scripted:
                return JSONResponse({"detail": message}, status_code=403)
            return login_page(target, message, status=403)
        answer: Response = (JSONResponse({"access": access or "write"}) if scripted
                            else RedirectResponse(target, status_code=303))
        if access is not None:
            session = open_session(hub.store, access, token, SESSION_HOURS * 3600)
            answer.set_cookie(COOKIE, session, max_age=SESSION_HOURS * 3600,
                              path="/", httponly=True, samesite="strict",
                              secure=request.url.scheme == "https")
        return answer

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        if not same_origin(request.headers):
            return Response(status_code=403)
        if COOKIE in request.cookies:  # ended in the store: on every server, at once
            close_session(hub.store, request.cookies[COOKIE])
        answer = RedirectResponse("/login", status_code=303)
        answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return answer

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC:
            return Response(status_code=404)
        text = resources.files("watchkeeper.server").joinpath("static", name).read_bytes()
        return Response(text, media_type=STATIC[name],
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
