"""The live dashboard in headless Chromium, against the real server on 127.0.0.1: model
list, a model's windows, findings and incidents, acknowledging and silencing from the page,
login with tokens, escaping of hostile column names, and no personal data in what it shows.

Needs Debian's Chromium at /usr/bin/chromium (``.ci/run`` installs it) and the Python
``playwright`` package (the ``dev`` or ``dashboard-tests`` extra); no browser download.
Outside CI a missing browser skips these tests; in CI (CI=true) it fails them.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np
import pyarrow as pa
import pytest

import watchkeeper as wk
from tests.server_helpers import READ, WRITE, Server, arrow, post, request, wait_for
from watchkeeper.server.auth import COOKIE, Tokens
from watchkeeper.store import Store

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported by the browser fixture
    expect = sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_MODEL = "<img src=x onerror=alert(2)>"
EMAILS = [f"person{i}@mail.example" for i in range(300)]
PHONES = [f"+44 20 7946 {i:04d}" for i in range(300)]
ARROW = "application/vnd.apache.arrow.stream"


def unavailable(why: str) -> None:
    """Skip on a developer's machine, fail in CI: a missing browser must not pass silently."""
    message = f"{why}; the dashboard tests need it (.ci/run installs it)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


# -- data ------------------------------------------------------------------------------------
def batch(seconds_ago: float, shift: float, seed: int, n: int = 400) -> pa.Table:
    """Events of one past one-second window; ``shift`` moves x and the hostile column."""
    rng = np.random.default_rng(seed)
    return pa.table({"x": rng.normal(size=n) + shift,
                     HOSTILE: rng.normal(size=n) + shift,
                     "y": rng.choice(["a", "b"], n),
                     "_ts": np.full(n, time.time() - seconds_ago)})


def personal(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"email": EMAILS[:n], "phone": PHONES[:n], "x": rng.normal(size=n),
                     "prediction": (rng.random(n) < 0.5).astype(int)})


def feed(server: Server, model: str, shifts: list[float], token: str | None = WRITE) -> None:
    """One batch per past second, oldest first, shifted as given; then wait for the
    incident the shifted ones open."""
    for i, shift in enumerate(shifts):
        status, answer = post(server, f"/v1/models/{model}/events",
                              arrow(batch(len(shifts) + 20 - i, shift, i)), token=token,
                              content_type=ARROW)
        assert status == 200, answer
    wait_for(lambda: incidents(server, model), timeout=60)


def incidents(server: Server, model: str, status: str = "open") -> list[dict[str, Any]]:
    answer = request(server.url + f"/v1/models/{model}/incidents?status={status}",
                     token=READ)[1]
    return answer["incidents"]


# -- the server and the browser ------------------------------------------------------------
@pytest.fixture(scope="module")
def suite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    n = 5_000
    path = tmp_path_factory.mktemp("suite") / "suite.yaml"
    wk.init(pa.table({"x": rng.normal(size=n), HOSTILE: rng.normal(size=n),
                      "y": rng.choice(["a", "b"], n)})).save(path)
    return path


@pytest.fixture(scope="module")
def open_server(browser: Any, tmp_path_factory: pytest.TempPathFactory,
                suite_file: Path) -> Iterator[Server]:
    """No tokens: the dashboard is open, as the API is. Models: m (windows, drift, an
    incident), empty (a suite, no events yet), nosuite (known to the store, no suite).
    Asks for the browser first, so that a missing one is reported before a server starts."""
    d = tmp_path_factory.mktemp("open")
    store_url = f"sqlite:///{d / 'wk.db'}"
    with Store(store_url) as store:
        store.save_findings("nosuite", datetime.fromtimestamp(0, UTC), [])
    server = Server(d, "--no-auth", "--store", store_url, "--suite", f"m={suite_file}",
                    "--suite", f"empty={suite_file}", "--window", "1s", "--grace", "1s")
    try:
        server.start()
        feed(server, "m", [0.0] * 6 + [2.0] * 6, token=None)
        hostile = "/v1/models/" + quote(HOSTILE_MODEL, safe="")
        assert post(server, hostile + "/suites", suite_file.read_bytes(), token=None)[0] == 200
        assert post(server, hostile + "/events", arrow(batch(25, 0.0, 7)), token=None,
                    content_type=ARROW)[0] == 200
        wait_for(lambda: request(server.url + hostile + "/windows")[1]["windows"])
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def auth_server(browser: Any, tmp_path_factory: pytest.TempPathFactory,
                suite_file: Path) -> Iterator[Server]:
    """Read and write tokens, personal data hashed with a key; models m and pii."""
    d = tmp_path_factory.mktemp("auth")
    pii_suite = wk.init(personal(300, 0))
    assert pii_suite.schema.pii == {"email": "hash", "phone": "hash"}
    pii_suite.save(d / "pii.yaml")
    server = Server(d, "--store", f"sqlite:///{d / 'wk.db'}", "--suite", f"m={suite_file}",
                    "--suite", f"pii={d / 'pii.yaml'}", "--window", "1s", "--grace", "1s")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WATCHKEEPER_PII_KEY", "dashboard-test-key")
        try:
            server.start()
            rows = personal(300, 1).append_column("_ts", pa.array([time.time() - 30] * 300))
            assert post(server, "/v1/models/pii/events", arrow(rows), content_type=ARROW)[0] \
                == 200
            feed(server, "m", [0.0] * 4 + [2.0] * 6)
            wait_for(lambda: request(server.url + "/v1/models/pii/windows",
                                     token=READ)[1]["windows"])
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if sync_playwright is None:
        unavailable("the Python package playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium chromium-driver)")
    manager = sync_playwright().start()
    try:
        chromium = manager.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        manager.stop()


class Visit:
    """A fresh browser context (no cookies) that records dialogs, page errors and every
    response, and refuses any request that is not to 127.0.0.1."""

    def __init__(self, browser: Any, **options: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, **options)
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.responses: list[Any] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("response", lambda r: self.responses.append(r))

    def _route(self, route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def bodies(self) -> list[tuple[str, bytes]]:
        out = []
        for r in self.responses:
            try:
                out.append((r.url, r.body()))
            except Exception:  # a redirect has no body
                continue
        return out

    def fetch(self, url: str, method: str = "GET", headers: dict | None = None) -> int:
        """Status of a fetch made by the page itself (its cookies, its origin)."""
        return self.page.evaluate(
            "([url, method, headers]) => fetch(url, {method, headers}).then(r => r.status)",
            [url, method, headers or {}])

    def close(self) -> None:
        self.context.close()
        assert self.outside == [], f"requests left 127.0.0.1: {self.outside}"
        assert self.errors == [], f"script errors: {self.errors}"


@pytest.fixture()
def visit(browser: Any) -> Iterator[Visit]:
    v = Visit(browser)
    try:
        yield v
    finally:
        v.close()


def log_in(v: Visit, server: Server, token: str, target: str = "/dashboard") -> None:
    v.page.goto(server.url + target)
    v.page.fill("#login-form input[name=token]", token)
    v.page.click("#login-form button[type=submit]")
    v.page.wait_for_selector("main h1:not(:has-text('Sign in'))")


# -- the open server -------------------------------------------------------------------------
def test_the_model_list_shows_every_model(open_server: Server, visit: Visit) -> None:
    page = visit.page
    answer = page.goto(open_server.url + "/")
    assert answer.status == 200 and page.url.endswith("/dashboard")
    row = page.locator("tr[data-model=m]")
    assert "v1" in row.inner_text()
    assert row.locator("td").nth(3).inner_text().strip() == str(len(incidents(open_server, "m")))
    latest = request(open_server.url + "/v1/models/m/windows", token=None)[1]["windows"][-1]
    assert latest["start"][:19].replace("T", " ") in row.inner_text()
    assert "no windows yet" in page.locator("tr[data-model=empty]").inner_text()
    assert "no suite deployed" in page.locator("tr[data-model=nosuite]").inner_text()
    page.click("tr[data-model=m] a")
    page.wait_for_url("**/dashboard/m")
    assert page.locator("main h1").first.inner_text() == "m"


def test_a_model_page_shows_windows_drift_and_the_incident(open_server: Server,
                                                            visit: Visit) -> None:
    page = visit.page
    assert page.goto(open_server.url + "/dashboard/m").status == 200
    findings = request(open_server.url + "/v1/models/m/findings", token=None)[1]["findings"]
    assert any(f["monitor"] == "feature_drift" and f["column"] == "x" for f in findings)
    windows = page.locator("#windows")
    assert "feature_drift" in windows.inner_text()
    [incident] = incidents(open_server, "m")
    line = page.locator(f"[data-incident='{incident['id']}']")
    diagnosis = incident["advice"]["diagnosis"]
    assert line.locator(".diagnosis").inner_text() == diagnosis
    assert incident["title"] in line.inner_text()
    report = page.locator("#wk-incidents")  # the report's section: causes and actions
    assert diagnosis in report.inner_text()
    assert incident["advice"]["actions"][0] in report.inner_text()


def test_acknowledge_and_silence_from_the_page(open_server: Server, visit: Visit) -> None:
    page = visit.page
    page.goto(open_server.url + "/dashboard/m")
    [incident] = incidents(open_server, "m")
    line = page.locator(f"[data-incident='{incident['id']}']")
    line.locator("button[data-action=ack]").click()
    page.wait_for_selector(f"[data-incident='{incident['id']}'] .acked")
    assert "acknowledged by dashboard" in line.inner_text()
    assert line.locator("button[data-action=ack]").is_disabled()
    after = request(open_server.url + f"/v1/models/m/incidents/{incident['id']}", token=None)[1]
    assert after["acknowledged"] and after["acknowledged_by"] == "dashboard"

    line.locator("button[data-action=silence]").click()
    page.wait_for_selector(f"[data-incident='{incident['id']}'] .silenced")
    after = request(open_server.url + f"/v1/models/m/incidents/{incident['id']}", token=None)[1]
    assert all(a["silenced_by"] for a in after["alerts"])


def test_a_hostile_column_name_is_shown_not_run(open_server: Server, browser: Any) -> None:
    # the page's Content-Security-Policy would block the handler anyway: bypass it, so
    # that this tests the escaping itself
    visit = Visit(browser, bypass_csp=True)
    try:
        page = visit.page
        page.goto(open_server.url + "/dashboard/m?refresh=1")
        assert HOSTILE in page.locator("#windows").inner_text()  # shown as text
        with page.expect_response(lambda r: "/body" in r.url):  # and after a refresh
            pass
        page.wait_for_timeout(300)
        assert HOSTILE in page.locator("#windows").inner_text()
        assert page.locator("img").count() == 0
        page.goto(open_server.url + "/dashboard")
        assert HOSTILE_MODEL in page.inner_text("#models")  # a hostile model name too
        page.click(f"tr[data-model='{HOSTILE_MODEL}'] a")
        assert page.locator("main h1").first.inner_text() == HOSTILE_MODEL
        assert "rows" in page.inner_text("#windows")
        page.goto(page.url + "?refresh=1")
        with page.expect_response(lambda r: "/body" in r.url) as refreshed:
            pass
        assert refreshed.value.status == 200
        assert page.locator("img").count() == 0
    finally:
        visit.close()
    assert visit.dialogs == []


def test_unknown_models_and_empty_states_are_pages_not_errors(open_server: Server,
                                                              visit: Visit) -> None:
    page = visit.page
    missing = page.goto(open_server.url + "/dashboard/nope")
    assert missing.status == 404 and "No model named “nope”" in page.inner_text("main")
    assert visit.fetch("/dashboard/nope/body") == 404
    assert page.goto(open_server.url + "/dashboard/empty").status == 200
    assert page.locator("#no-windows").is_visible()
    assert page.locator("#no-incidents").is_visible()
    assert page.goto(open_server.url + "/dashboard/nosuite").status == 200
    assert "no suite deployed" in page.inner_text(".subtitle")
    assert page.locator("#no-windows").is_visible()


def test_the_page_refreshes_in_place(open_server: Server, visit: Visit) -> None:
    page = visit.page
    page.goto(open_server.url + "/dashboard?refresh=1")
    page.evaluate("window.stillHere = true")
    cell = page.locator("tr[data-model=empty] td").nth(2)
    assert "no windows yet" in cell.inner_text()
    assert post(open_server, "/v1/models/empty/events", arrow(batch(30, 0.0, 99)),
                token=None, content_type=ARROW)[0] == 200
    expect(cell).to_contain_text("400 rows", timeout=15_000)
    assert page.evaluate("window.stillHere") is True  # no reload


# -- tokens ----------------------------------------------------------------------------------
def test_an_open_server_refuses_cross_site_writes(open_server: Server) -> None:
    """Without tokens, any page the operator visits could post to a local server; browsers
    send Origin with such posts, scripts and the SDK do not."""
    url = open_server.url + "/v1/models/m/silences"
    body = b'{"matchers": {"column": "nothing"}, "hours": 0.01}'
    host = urlsplit(open_server.url).netloc
    status, answer = request(url, body, headers={"Origin": "https://evil.example"})
    assert status == 403 and "cross-site" in answer["detail"]
    assert request(url, body, headers={"Origin": f"http://{host}"})[0] == 200
    assert request(url, body)[0] == 200
    assert request(open_server.url + "/v1/models", headers={"Origin": "https://x.example"}
                   )[0] == 200  # reading is not changed by it
    assert Tokens().check_request({"origin": "http://a", "host": "b"}, {}, "GET", "read") \
        == (200, "")


def test_session_cookie_rules() -> None:
    tokens = Tokens(write=WRITE, read=READ)
    sessions = {"r-session": "read", "w-session": "write"}.get  # as the store says
    read, write = {COOKIE: "r-session"}, {COOKIE: "w-session"}
    csrf = {"x-watchkeeper": "1"}
    assert tokens.check_request({}, read, "GET", "read", sessions) == (200, "")
    assert tokens.check_request({}, read, "POST", "write", sessions)[0] == 403
    assert tokens.check_request(csrf, write, "POST", "write", sessions) == (200, "")
    assert "X-Watchkeeper" in tokens.check_request({}, write, "POST", "write", sessions)[1]
    assert tokens.check_request({}, {COOKIE: READ}, "GET", "read", sessions)[0] == 403
    assert tokens.check_request({}, read, "GET", "read")[0] == 403  # no session store
    assert tokens.check_request({}, {}, "GET", "read")[0] == 401
    bearer = {"authorization": f"Bearer {WRITE}"}  # a bearer token needs no extra header
    assert tokens.check_request(bearer, read, "POST", "write", sessions) == (200, "")
    assert Tokens().check_request({}, {}, "POST", "write") == (200, "")  # auth off


def cross_site_login(server: Server) -> int:
    req = urllib.request.Request(
        server.url + "/login", data=f"token={READ}&next=/dashboard".encode(),
        headers={"Origin": "http://evil.example",
                 "Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_login_is_required_and_a_wrong_token_refused(auth_server: Server,
                                                     visit: Visit) -> None:
    page = visit.page
    first = page.goto(auth_server.url + "/dashboard/m")
    assert first.status == 401 and page.locator("#login-form").is_visible()
    assert page.locator("#windows").count() == 0
    assert visit.fetch("/dashboard/m/body") == 401
    page.fill("#login-form input[name=token]", "guess")
    with page.expect_response(lambda r: r.url.endswith("/login")) as refused:
        page.click("#login-form button[type=submit]")
    assert refused.value.status == 403
    assert "not valid" in page.inner_text("#login-error")
    assert visit.context.cookies() == []

    page.fill("#login-form input[name=token]", READ)
    page.click("#login-form button[type=submit]")
    page.wait_for_url("**/dashboard/m")
    assert page.locator("main h1").first.inner_text() == "m"
    assert "feature_drift" in page.inner_text("#windows")
    [cookie] = visit.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["value"] not in (READ, WRITE)
    assert visit.fetch("/v1/models") == 200  # the API takes the cookie too
    assert cross_site_login(auth_server) == 403


def test_writes_need_the_write_token_and_the_header(auth_server: Server, visit: Visit) -> None:
    page = visit.page
    log_in(visit, auth_server, READ, "/dashboard/m")
    [incident] = incidents(auth_server, "m")
    ack = f"/v1/models/m/incidents/{incident['id']}/ack"
    assert visit.fetch(ack, "POST", {"X-Watchkeeper": "1"}) == 403  # read session

    page.click(f"[data-incident='{incident['id']}'] button[data-action=ack]")
    dialog = page.locator("#wk-token")
    dialog.wait_for()
    dialog.locator("input[name=token]").fill(READ)
    dialog.locator("button[value=ok]").click()
    expect(page.locator("#wk-token-error")).to_contain_text("read token")
    dialog.locator("input[name=token]").fill(WRITE)
    dialog.locator("button[value=ok]").click()
    page.wait_for_selector(f"[data-incident='{incident['id']}'] .acked")
    after = request(auth_server.url + f"/v1/models/m/incidents/{incident['id']}",
                    token=READ)[1]
    assert after["acknowledged"] and after["acknowledged_by"] == "dashboard"
    # now a write session, but a cookie-authenticated POST without the header is refused
    assert visit.fetch(ack, "POST") == 403
    assert visit.fetch(ack, "POST", {"X-Watchkeeper": "1"}) == 200


def test_personal_data_never_reaches_the_dashboard(auth_server: Server, visit: Visit) -> None:
    page = visit.page
    log_in(visit, auth_server, READ)
    assert "pii" in page.inner_text("tr[data-model=pii]")
    page.goto(auth_server.url + "/dashboard/pii?refresh=1")
    assert "pii: recent windows" in page.inner_text("#windows")
    with page.expect_response(lambda r: "/body" in r.url):  # one refresh in place
        pass
    shown = [("the page", page.content().encode()), *visit.bodies()]
    assert len(shown) > 4
    for value in [*EMAILS, *PHONES, "mail.example"]:
        for where, content in shown:
            assert value.encode() not in content, f"{value} found in {where}"


def test_signing_out_ends_the_session_in_the_server(auth_server: Server, visit: Visit,
                                                    browser: Any) -> None:
    """The cookie kept from before "Sign out" (copied, as a thief would) no longer works:
    the session ended in the store, not only in this browser."""
    page = visit.page
    log_in(visit, auth_server, READ, "/dashboard/m")
    [cookie] = visit.context.cookies()
    assert visit.fetch("/v1/models") == 200
    page.click("form.logout button[type=submit]")
    page.wait_for_selector("#login-form")
    assert visit.context.cookies() == []
    stolen = Visit(browser)
    try:
        stolen.context.add_cookies([cookie])
        answer = stolen.page.goto(auth_server.url + "/dashboard/m")
        assert answer.status == 401 and stolen.page.locator("#login-form").is_visible()
        assert stolen.fetch("/v1/models") == 403
    finally:
        stolen.close()
