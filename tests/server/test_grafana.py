"""The Grafana dashboard only queries what the server's /metrics exposes: every PromQL
expression is parsed (promql-parser, the Prometheus grammar) and each series it names,
each label it matches, groups or joins on, is checked against the /metrics of a real
server on 127.0.0.1 that has folded a batch with labels."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families

import watchkeeper as wk
from tests.helpers import run
from tests.server_helpers import READ, Server, arrow, post, request, wait_for
from watchkeeper.report import grafana

promql = pytest.importorskip("promql_parser")
MODEL = "credit"


def events(n: int, seed: int, start: int = 0, ts: float | None = None,
           shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1.0, n)
    proba = 1 / (1 + np.exp(-x))
    return pa.table({
        "id": np.arange(start, start + n),
        "x": x,
        "colour": rng.choice(["red", "green", "blue"], n),
        "sex": rng.choice(["f", "m"], n),
        "proba": proba,
        "prediction": (proba > 0.5).astype(int),
        "_ts": np.full(n, time.time() if ts is None else ts),
        "_latency_ms": rng.lognormal(2.0, 0.3, n),
    })


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Sample name → label names, from /metrics after a window with findings, labels,
    fairness, OOD, latency and a rule was folded (and one batch refused)."""
    d = tmp_path_factory.mktemp("grafana")
    reference = events(5_000, 0)
    label = (np.random.default_rng(1).random(5_000) < reference.column("proba").to_numpy())
    reference = reference.append_column("label", pa.array(label.astype(int)))
    wk.init(reference.drop_columns(["_ts"]), target="label", sensitive="sex",
            rules={"x_small": "abs(x) < 3"}, serving=True).save(d / "suite.yaml")
    server = Server(d, "--store", f"sqlite:///{d / 'wk.db'}", "--suite",
                    f"{MODEL}={d / 'suite.yaml'}", "--window", "1s", "--grace", "1s").start()
    try:
        t0 = time.time() - 30  # a whole window in the past: it closes at once
        batch = events(2_000, 2, start=10_000, ts=t0, shift=1.5)
        assert post(server, f"/v1/models/{MODEL}/events", arrow(batch),
                    content_type="application/vnd.apache.arrow.stream")[0] == 200
        labels = {"rows": [{"id": 10_000 + i, "label": int(i % 3 == 0)}
                           for i in range(2_000)]}
        assert post(server, f"/v1/models/{MODEL}/labels", json.dumps(labels).encode())[0] == 200
        assert post(server, f"/v1/models/{MODEL}/events", b"{not json")[0] == 422

        def scraped() -> str | None:
            text = request(server.url + "/metrics", token=READ)[1]
            return text if "watchkeeper_performance_realised{" in text else None

        text = wait_for(scraped, timeout=60)
    finally:
        server.stop()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def selectors(node: Any) -> Iterator[Any]:
    """Every vector selector in a parsed expression."""
    if isinstance(node, promql.VectorSelector):
        yield node
        return
    for attr in ("expr", "lhs", "rhs", "vector_selector", "param"):
        child = getattr(node, attr, None)
        if child is not None and not isinstance(child, (str, int, float)):
            yield from selectors(child)
    for arg in getattr(node, "args", None) or []:
        yield from selectors(arg)


def grouping_labels(node: Any) -> Iterator[str]:
    """Labels named by by/without (aggregations) and on/ignoring (binary operations)."""
    modifier = getattr(node, "modifier", None)
    if modifier is not None:
        matching = getattr(modifier, "matching", None)
        yield from getattr(modifier, "labels", None) or []
        if matching is not None:
            yield from getattr(matching, "labels", None) or []
    for attr in ("expr", "lhs", "rhs"):
        child = getattr(node, attr, None)
        if child is not None:
            yield from grouping_labels(child)
    for arg in getattr(node, "args", None) or []:
        yield from grouping_labels(arg)


def concrete(expr: str) -> str:
    """A dashboard expression with Grafana's variables given values, as Grafana sends it."""
    return (expr.replace("$model", MODEL).replace("$metric", "accuracy")
            .replace("$__rate_interval", "1m"))


def problems(expr: str, exposed: dict[str, set[str]]) -> tuple[list[str], set[str]]:
    """What in ``expr`` /metrics does not expose, and the series it names."""
    text = concrete(expr)
    if text.startswith("label_values("):  # a variable: label_values(SELECTOR, LABEL)
        inner, label = text[len("label_values("):-1].rsplit(",", 1)
        tree = promql.parse(inner)
        extra = [label.strip()]
    else:
        tree = promql.parse(text)
        extra = list(grouping_labels(tree))
    found = list(selectors(tree))
    if not found:
        return [f"{expr}: names no series"], set()
    out = []
    for s in found:
        if s.name not in exposed:
            out.append(f"{expr}: /metrics has no series {s.name}")
            continue
        out += [f"{expr}: {s.name} has no label {m.name} (it has {sorted(exposed[s.name])})"
                for m in s.matchers.matchers if m.name not in exposed[s.name]]
    labels = set().union(*(exposed.get(s.name, set()) for s in found))
    out += [f"{expr}: groups or joins on {label}, not a label of its series"
            for label in extra if label not in labels]
    return out, {s.name for s in found}


def test_every_expression_names_only_exposed_series_and_labels(
        exposed: dict[str, set[str]]) -> None:
    exprs = grafana.expressions(grafana.dashboard(MODEL))
    assert len(exprs) >= 25
    named: set[str] = set()
    for expr in exprs:
        wrong, names = problems(expr, exposed)
        assert not wrong
        named |= names
    # the measures this issue asked for are on the dashboard
    for name in ("watchkeeper_drift_distance", "watchkeeper_drift_threshold",
                 "watchkeeper_performance_realised", "watchkeeper_performance_estimated",
                 "watchkeeper_performance_estimated_low", "watchkeeper_fairness_di_ratio",
                 "watchkeeper_ood_share", "watchkeeper_latency_ms",
                 "watchkeeper_ingested_rows_total", "watchkeeper_rule_violation_rate"):
        assert name in named


@pytest.mark.parametrize(("expr", "problem"), [
    ('watchkeeper_drift_distanse{model="$model"}', "no series watchkeeper_drift_distanse"),
    ('watchkeeper_drift_distance{colum="x"}', "has no label colum"),
    ("sum by (col) (watchkeeper_drift_distance)", "groups or joins on col"),
    ("label_values(watchkeeper_window_rows, column)", "groups or joins on column"),
    ("watchkeeper_ingested_rows", "no series watchkeeper_ingested_rows"),  # _total exposed
])
def test_the_check_catches_what_metrics_lacks(exposed: dict[str, set[str]], expr: str,
                                              problem: str) -> None:
    wrong, _ = problems(expr, exposed)
    assert len(wrong) == 1 and problem in wrong[0]


def test_the_dashboard_is_well_formed_grafana_json() -> None:
    board = grafana.dashboard(MODEL)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for p in board["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24 and g["h"] > 0
        for t in p.get("targets", []):
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    refs = [[t["refId"] for t in p.get("targets", [])] for p in board["panels"]]
    assert all(len(r) == len(set(r)) for r in refs)
    # every panel lies below the one before it or beside it: no overlap on the grid
    cells = set()
    for p in board["panels"]:
        g = p["gridPos"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & area, p["title"]
        cells |= area


def test_the_grafana_command_writes_the_dashboard_and_provisioning(tmp_path: Path) -> None:
    done = run("grafana", "--model", MODEL, "-o", "boards", "--folder",
               "/var/lib/grafana/dashboards", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    board = json.loads((tmp_path / "boards" / f"watchkeeper-{MODEL}.json").read_text())
    assert board == grafana.dashboard(MODEL)
    provider = (tmp_path / "boards" / "provisioning.yaml").read_text()
    assert 'path: "/var/lib/grafana/dashboards"' in provider and "type: file" in provider
    bad = run("grafana", "--model", "a b", cwd=tmp_path)
    assert bad.returncode == 2 and "model: expected a model name" in bad.stderr


SCHEMA = Path(__file__).resolve().parents[2] / ".venv" / "grafana-schema" / "node_modules"
#: The dashboard as a TypeScript constant of Grafana's ``Dashboard`` type. Enums are spelt
#: as their string values (as JSON spells them); object literals keep TypeScript's
#: excess-property check, so an unknown field is an error like a wrong type.
CHECK_TS = """import type { Dashboard } from '@grafana/schema';
type Plain<T> = T extends string ? `${T}` : T extends (infer U)[] ? Plain<U>[] :
  T extends object ? { [K in keyof T]: Plain<T[K]> } : T;
export const board: Plain<Dashboard> = %s;
"""


def type_check(board: dict[str, Any], where: Path) -> subprocess.CompletedProcess[str]:
    (where / "node_modules").symlink_to(SCHEMA, target_is_directory=True)
    (where / "check.ts").write_text(CHECK_TS % json.dumps(board, indent=1))
    return subprocess.run([str(SCHEMA / ".bin" / "tsc"), "--noEmit", "--strict",
                           "--skipLibCheck", "--module", "nodenext", "--moduleResolution",
                           "nodenext", "check.ts"], cwd=where, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.skipif(not (SCHEMA / ".bin" / "tsc").exists(),
                    reason="Grafana's schema types are not installed: make grafana-schema-deps")
def test_the_dashboard_type_checks_against_grafanas_schema(tmp_path: Path) -> None:
    """@grafana/schema's ``Dashboard`` (Grafana 13.2's dashboard JSON model) accepts the
    dashboard, and refuses it with an unknown panel field or a field of the wrong type."""
    board = grafana.dashboard(MODEL)
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    done = type_check(board, tmp_path / "good")
    assert done.returncode == 0, done.stdout + done.stderr
    board["panels"][1]["gridPoz"] = 3
    board["schemaVersion"] = "39"
    done = type_check(board, tmp_path / "bad")
    assert "'\"gridPoz\"' does not exist" in done.stdout
    assert "Type 'string' is not assignable to type 'number'" in done.stdout
