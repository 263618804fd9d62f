"""Personal data the suite does not know, client ids, /metrics, failed bearer tokens and
dashboard sessions, against the real server on 127.0.0.1 (SQLite and PostgreSQL stores)."""

from __future__ import annotations

import http.client
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

import watchkeeper as wk
from tests.server_helpers import READ, WRITE, Server, arrow, metric, post, request, wait_for
from watchkeeper.io.pii import (
    client_pseudonym,
    personal_values,
    pseudonymise_clients,
    scrub_unknown,
)
from watchkeeper.server.auth import COOKIE
from watchkeeper.server.hub import Hub
from watchkeeper.server.privacy import Privacy
from watchkeeper.store import Store, tables
from watchkeeper.store.sessions import close_session, open_session, session_access
from watchkeeper.wire import from_ipc

ARROW = "application/vnd.apache.arrow.stream"
EMAILS = [f"person{i}@mail.example" for i in range(600)]
CLIENTS = [f"caller{i}@corp.example" for i in range(6)]
#: every address sent has one of these domains
DOMAINS = ("mail.example", "corp.example")


@pytest.fixture(scope="module")
def suite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A suite from a reference with no personal data in it."""
    rng = np.random.default_rng(0)
    n = 3_000
    path = tmp_path_factory.mktemp("suite") / "suite.yaml"
    wk.init(pa.table({"x": rng.normal(size=n),
                      "prediction": (rng.random(n) < 0.5).astype(int)})).save(path)
    return path


def personal_batch(n: int, seed: int, seconds_ago: float) -> pa.Table:
    """Events with columns the suite never saw: e-mail addresses, a note quoting one, a
    column named by an address, and e-mail-like client ids and error messages."""
    rng = np.random.default_rng(seed)
    return pa.table({
        "x": rng.normal(size=n), "prediction": (rng.random(n) < 0.5).astype(int),
        "email": EMAILS[:n],
        "note": [f"call back {e} tomorrow" if i % 7 == 0 else "ok"
                 for i, e in enumerate(EMAILS[:n])],
        "boss@corp.example": rng.normal(size=n),
        "plain": rng.choice(["a", "b"], n),
        # one caller floods: 2/3 of the rows, ten times as many as each of the others
        "_client": [CLIENTS[0] if i % 3 else CLIENTS[1 + i % 5] for i in range(n)],
        "_error": [f"no account for {EMAILS[i]}" if i % 50 == 0 else None for i in range(n)],
        "_ts": np.full(n, time.time() - seconds_ago)})


def store_contents(url: str) -> str:
    """Every row of every table, event payloads decoded, as text."""
    engine = sa.create_engine(url)
    out = []
    try:
        with engine.connect() as conn:
            for table in tables.metadata.sorted_tables:
                for row in conn.execute(sa.select(table)).mappings():
                    row = dict(row)
                    if table.name == "events":
                        row["payload"] = from_ipc(row["payload"]).to_pylist()
                    out.append(json.dumps(row, default=repr))
    finally:
        engine.dispose()
    return "\n".join(out)


@pytest.mark.slow
def test_personal_data_the_suite_never_saw_is_not_stored_or_shown(
        tmp_path: Path, suite_path: Path, store_url: str) -> None:
    server = Server(tmp_path, "--store", store_url, "--suite", f"m={suite_path}",
                    "--window", "1s", "--grace", "1s", "--notify-log").start()
    try:
        for i in range(3):
            status, answer = post(server, "/v1/models/m/events",
                                  arrow(personal_batch(600, i, 20 - i)), content_type=ARROW)
            assert status == 200, answer
        rows = personal_batch(50, 9, 17).drop_columns(["_ts"]).to_pylist()
        assert post(server, "/v1/models/m/events", json.dumps(rows).encode())[0] == 200
        wait_for(lambda: len(request(server.url + "/v1/models/m/windows", token=READ)[1]
                             ["windows"]) >= 2, timeout=60)
        wait_for(lambda: request(server.url + "/v1/models/m/incidents", token=READ)[1]
                 ["incidents"], timeout=60)
        answers = {path: request(server.url + path, token=READ)[1] for path in (
            "/v1/models/m/windows", "/v1/models/m/findings", "/v1/models/m/incidents",
            "/v1/models/m/quarantine", "/metrics", "/dashboard/m", "/dashboard")}
        hashed = metric(server, 'watchkeeper_personal_data_columns_total'
                                '{action="hashed",model="m"}')
        dropped = metric(server, 'watchkeeper_personal_data_columns_total'
                                 '{action="dropped",model="m"}')
    finally:
        server.stop()
    stored = store_contents(store_url)
    places = {"store": stored, "server log": server.logs(),
              **{path: json.dumps(answer) for path, answer in answers.items()}}
    if store_url.startswith("sqlite"):  # the file itself, and its write-ahead log
        path = Path(store_url.removeprefix("sqlite:///"))
        for f in (path, path.with_name(path.name + "-wal")):
            if f.exists():
                places[f.name] = f.read_bytes().decode("latin-1")
    for domain in DOMAINS:
        for where, text in places.items():
            assert domain not in text, f"{domain} found in {where}"
    # what was sent is there, scrubbed: 4 batches each hash email, note and _error, and
    # drop the column named by an address; client ids are 16-hex pseudonyms
    assert (hashed, dropped) == (12.0, 4.0)
    assert '"plain": "a"' in stored or '"plain": "b"' in stored
    assert re.search(r'"email": "[0-9a-f]{64}"', stored)
    clients = set(re.findall(r'"_client": "([^"]*)"', stored))
    assert len(clients) == len(CLIENTS) and all(re.fullmatch("[0-9a-f]{16}", c)
                                                for c in clients)
    assert all(c in places["/v1/models/m/windows"] for c in clients)  # shown by pseudonym
    flood = {f["segment"] for f in answers["/v1/models/m/findings"]["findings"]
             if f["monitor"] == "client_volume"}
    assert len(flood) == 1 and flood.pop().removeprefix("client=") in clients
    assert "client=" in places["/v1/models/m/incidents"] and "FIRING" in places["server log"]
    assert "column 'email' is not in the suite" in places["server log"]


def test_value_patterns_at_ingest() -> None:
    assert personal_values(pa.array(["+44 20 7946 0018"])) == "phone"
    assert personal_values(pa.array(["(555) 123-4567"])) == "phone"
    assert personal_values(pa.array(["4111-1111-1111-1111"])) == "card"
    assert personal_values(pa.array(["4111-1111-1111-1112"])) is None  # fails Luhn
    assert personal_values(pa.array(["10.1.2.3"])) == "ip"
    assert personal_values(pa.array(["2001:db8::1"])) == "ip"
    assert personal_values(pa.array(["a", "b"]).dictionary_encode()) is None
    assert personal_values(pa.array(["x@y.org"]).dictionary_encode()) == "e-mail"
    ordinary = pa.array(["2024-01-31", "31/01/2024", "12:30:00", "v1.2.3", "1234", "SCHL",
                         "Self-emp-not-inc", "3.14159", None])
    assert personal_values(ordinary) is None
    assert personal_values(pa.array([1.5, 2.5])) is None
    mapping = pa.array([[("home", "10.0.0.1")]], pa.map_(pa.string(), pa.string()))
    assert personal_values(mapping) == "ip"
    assert personal_values(pa.array([{"n": 1, "tel": "+1 415 555 0100"}])) == "phone"
    assert personal_values(pa.array([[["fine"]], [[]]])) is None
    assert personal_values(pa.array([20240131, 1_700_000_000_000])) is None
    stamps = np.arange(1_700_000_000_000, 1_700_000_000_000 + 10_000 * 1_000, 1_000)
    assert personal_values(pa.array(stamps)) is None  # epoch ms (1 in 10 pass Luhn)
    assert personal_values(pa.array(stamps * 1_000)) is None  # and µs


def test_scrubbing_keeps_known_columns_and_hashes_stably() -> None:
    batch = pa.table({"x": ["ann@example.org"], "contact": ["ann@example.org"],
                      "_client": ["ann@example.org"]})
    once, done = scrub_unknown(batch, {"x", "_client"}, b"key")
    again, _ = scrub_unknown(batch, {"x", "_client"}, b"key")
    assert done == {"contact": "hashed"} and once.equals(again)
    assert once.column("x")[0].as_py() == "ann@example.org"  # the suite decides for its own
    nested = pa.table({"cc": pa.array([[{"to": "bob@example.org"}], None])})
    out, done = scrub_unknown(nested, set(), b"key")
    assert done == {"cc": "hashed"} and "example.org" not in str(out.to_pylist())
    assert out.column("cc")[1].as_py() is None
    named = pseudonymise_clients(pa.table({"_client": [None, "a", "b", "a"]}), "_client", b"k")
    first = named.column("_client").to_pylist()
    assert first[0] is None and first[1] == first[3] != first[2] and len(first[1]) == 16
    assert pseudonymise_clients(pa.table({"_client": ["a"]}), "_client", b"other") \
        .column("_client")[0].as_py() != first[1]


def test_client_pseudonyms_are_shared_by_servers_and_configurable(
        tmp_path: Path, suite_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batch = pa.table({"x": [1.0, 2.0], "_client": CLIENTS[:2]})
    monkeypatch.delenv("WATCHKEEPER_PII_KEY", raising=False)
    names = []
    for _ in range(2):  # two servers (or one restarted) on one store, no WATCHKEEPER_PII_KEY
        with Store(f"sqlite:///{tmp_path / 'wk.db'}") as store:
            hub = Hub(store, lease_ttl=None)
            hub.register("m", suite_path.read_text())
            names.append(Privacy(hub).scrub("m", batch).column("_client").to_pylist())
            assert Privacy(hub, show_clients=True).scrub("m", batch).equals(batch)
            hub.pii_key = b"operator-key"  # WATCHKEEPER_PII_KEY, when set
            assert Privacy(hub).scrub("m", batch).column("_client").to_pylist() == [
                client_pseudonym(c, b"operator-key") for c in CLIENTS[:2]]
    assert names[0] == names[1] and not set(names[0]) & set(CLIENTS)


# -- /metrics ------------------------------------------------------------------------------
@pytest.mark.slow
def test_metrics_need_a_token_unless_opened(tmp_path: Path, suite_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHKEEPER_METRICS_TOKEN", "scrape-only-token")
    closed = Server(tmp_path, "--store", f"sqlite:///{tmp_path / 'a.db'}", "--suite",
                    f"m={suite_path}").start()
    opened = Server(tmp_path, "--store", f"sqlite:///{tmp_path / 'b.db'}", "--suite",
                    f"m={suite_path}", "--metrics-open").start()
    try:
        assert request(closed.url + "/metrics")[0] == 401
        assert request(closed.url + "/metrics", token="wrong")[0] == 403
        for token in (READ, WRITE, "scrape-only-token"):
            status, text = request(closed.url + "/metrics", token=token)
            assert status == 200 and "watchkeeper_ingested_rows" in text
        # the metrics token reads nothing else
        assert request(closed.url + "/v1/models", token="scrape-only-token")[0] == 403
        assert request(opened.url + "/metrics")[0] == 200
    finally:
        closed.stop()
        opened.stop()


# -- failed bearer tokens --------------------------------------------------------------------
def call(server: Server, token: str, source: str, forwarded: str | None = None
         ) -> tuple[int, dict[str, str]]:
    """GET /v1/models from a client address of the loopback network (127.0.0.0/8)."""
    headers = {"Authorization": f"Bearer {token}"}
    if forwarded:
        headers["X-Forwarded-For"] = forwarded
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30,
                                      source_address=(source, 0))
    try:
        conn.request("GET", "/v1/models", headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


@pytest.mark.slow
def test_wrong_bearer_tokens_from_one_address_are_limited(guarded: Server) -> None:
    attacker, colleague = "127.0.0.2", "127.0.0.3"
    for _ in range(3):
        assert call(guarded, "guess", attacker)[0] == 403
    status, headers = call(guarded, "guess", attacker)
    assert status == 429 and 1 <= int(headers["retry-after"]) <= 3
    assert call(guarded, READ, attacker)[0] == 429  # a right guess does not show through
    assert call(guarded, READ, colleague)[0] == 200
    answered = time.monotonic()
    statuses = {call(guarded, f"guess{i}", attacker)[0] for i in range(50)}
    assert statuses == {429}
    assert metric(guarded, 'watchkeeper_rejected_batches_total{reason="auth_limited"}') >= 51
    # an untrusted peer cannot pick its address with X-Forwarded-For ...
    assert call(guarded, READ, attacker, forwarded="10.9.9.9")[0] == 429
    # ... but behind the trusted proxy (127.0.0.1 by default) the forwarded address counts
    for _ in range(3):
        assert call(guarded, "guess", "127.0.0.1", forwarded="10.0.0.66")[0] == 403
    assert call(guarded, READ, "127.0.0.1", forwarded="10.0.0.66")[0] == 429
    assert call(guarded, READ, "127.0.0.1", forwarded="10.0.0.77")[0] == 200
    time.sleep(max(0.0, 3.2 - (time.monotonic() - answered)))
    wait_for(lambda: call(guarded, READ, attacker)[0] == 200, timeout=10, every=0.5)


@pytest.mark.slow
def test_without_trusted_proxies_the_socket_address_counts(tmp_path: Path,
                                                           suite_path: Path) -> None:
    server = Server(tmp_path, "--store", f"sqlite:///{tmp_path / 'wk.db'}", "--suite",
                    f"m={suite_path}", "--login-failures", "2", "--forwarded-allow-ips", "")
    server.start()
    try:
        for i in range(2):
            assert call(server, "guess", "127.0.0.1", forwarded=f"10.0.0.{i}")[0] == 403
        assert call(server, READ, "127.0.0.1", forwarded="10.0.0.9")[0] == 429
    finally:
        server.stop()


# -- dashboard sessions ----------------------------------------------------------------------
def test_sessions_expire_end_at_logout_and_with_their_token(store_url: str) -> None:
    tokens = {"read": READ, "write": WRITE}
    with Store(store_url) as store, Store(store_url) as other:  # two servers on one store
        read = open_session(store, "read", READ, 3600)
        write = open_session(store, "write", WRITE, 3600)
        brief = open_session(store, "read", READ, 0.05)
        assert session_access(other, read, tokens) == "read"
        assert session_access(other, write, tokens) == "write"
        assert session_access(store, "made-up", tokens) is None
        time.sleep(0.1)
        assert session_access(store, brief, tokens) is None  # expired in the store
        assert session_access(store, write, {"read": READ, "write": "rotated"}) is None
        assert session_access(store, read, {"read": READ, "write": "rotated"}) == "read"
        assert close_session(other, read) and not close_session(other, read)
        assert session_access(store, read, tokens) is None
        engine = sa.create_engine(store_url)
        with engine.connect() as conn:  # the store has neither the ids nor the tokens
            stored = json.dumps([dict(r) for r in conn.execute(
                sa.select(tables.sessions)).mappings()])
        engine.dispose()
        assert write not in stored and WRITE not in stored and READ not in stored


def login_cookie(server: Server, token: str) -> str:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.request("POST", "/login", body=f"token={token}&next=/dashboard".encode(),
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        response.read()
        assert response.status == 303
        found = re.search(rf"{COOKIE}=([^;]+)", response.getheader("set-cookie") or "")
        assert found
        return found.group(1)
    finally:
        conn.close()


def with_cookie(server: Server, path: str, cookie: str, method: str = "GET") -> Any:
    return request(server.url + path, method=method, body=b"" if method == "POST" else None,
                   headers={"Cookie": f"{COOKIE}={cookie}"})


@pytest.mark.slow
def test_logout_ends_the_session_on_every_server(tmp_path: Path, suite_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'wk.db'}"
    first = Server(tmp_path, "--store", store, "--suite", f"m={suite_path}").start()
    second = Server(tmp_path, "--store", store).start()
    try:
        cookie = login_cookie(first, READ)
        assert cookie not in (READ, WRITE)
        assert with_cookie(first, "/v1/models", cookie)[0] == 200
        assert with_cookie(second, "/v1/models", cookie)[0] == 200
        assert with_cookie(first, "/logout", cookie, "POST")[0] in (200, 303)
        for server in (first, second):
            status, answer = with_cookie(server, "/v1/models", cookie)
            assert status == 403 and "signed out" in answer["detail"]
    finally:
        first.stop()
        second.stop()


@pytest.mark.slow
def test_a_new_token_ends_the_sessions_of_the_old_one(tmp_path: Path, suite_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'wk.db'}"
    before = Server(tmp_path, "--store", store, "--suite", f"m={suite_path}").start()
    try:
        cookie = login_cookie(before, READ)
        assert with_cookie(before, "/v1/models", cookie)[0] == 200
    finally:
        before.stop()
    rotated = Server(tmp_path, "--store", store,
                     env={"WATCHKEEPER_READ_TOKEN": "rotated-read-token"}).start()
    try:
        assert with_cookie(rotated, "/v1/models", cookie)[0] == 403
        assert with_cookie(rotated, "/v1/models", login_cookie(rotated, "rotated-read-token")
                           )[0] == 200
    finally:
        rotated.stop()


def test_a_store_from_before_sessions_opens_and_migrates(store_url: str) -> None:
    from watchkeeper.store import SCHEMA_VERSION, migrations

    # the version just before the sessions migration, wherever it stands in the list
    before = next(n for n, (_, step) in enumerate(migrations.MIGRATIONS)
                  if step is migrations._sessions)
    with Store(store_url) as store:
        store.add_suite("m", "monitors: []")
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE sessions"))
        conn.execute(sa.text("DROP TABLE server_keys"))
        conn.execute(sa.text("DELETE FROM schema_version"))
        for v in range(1, before + 1):
            conn.execute(sa.text("INSERT INTO schema_version VALUES (:v, :t, 'old')"),
                         {"v": v, "t": datetime.now(UTC)})
    with Store(store_url) as store:
        assert store.migrate() == SCHEMA_VERSION
        session = open_session(store, "read", READ, 60)
        assert session_access(store, session, {"read": READ}) == "read"
        assert store.active_suite("m").version == 1
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version FROM schema_version ORDER BY version"))
        assert versions.scalars().all() == list(range(1, SCHEMA_VERSION + 1))
    engine.dispose()
