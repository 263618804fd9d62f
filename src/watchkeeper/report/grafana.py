"""A Grafana dashboard over the server's ``/metrics`` (``watchkeeper grafana --model M``).

The dashboard reads the series of :mod:`watchkeeper.server.metrics` through a Prometheus
data source: each model's latest closed window, so Prometheus' own history is the time
axis. Rows: overview (rows, alerts), drift per column against its calibrated threshold,
performance realised against the label-free estimate and its band, fairness, out-of-
distribution inputs, service (latency, ingest, refusals), declarative rules, and the
findings of the latest window. Variables: the data source, the model (default ``M``) and
the performance metric. The provisioning file makes Grafana load dashboards from a folder.

>>> board = dashboard("credit")
>>> board["title"], board["templating"]["list"][1]["current"]["value"]
('watchkeeper: credit', 'credit')
>>> all(t["expr"] for p in board["panels"] for t in p.get("targets", []))
True
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from watchkeeper.errors import SuiteError
from watchkeeper.io.files import write_atomic

#: Grafana's dashboard JSON schema version the panels are written for (Grafana 10-11).
SCHEMA_VERSION = 39
_DS = {"type": "prometheus", "uid": "${datasource}"}
_M = 'model="$model"'
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


def _target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> dict[str, Any]:
    return {"datasource": _DS, "expr": expr, "legendFormat": legend, "refId": ref,
            "range": not extra.get("instant", False), **extra}


class _Layout:
    """Places panels on Grafana's 24-column grid, row after row."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = self.y = 0
        self.row_height = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                            "id": len(self.panels) + 1,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}})
        self.y += 1

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_height
            self.x = self.row_height = 0

    def add(self, panel: dict[str, Any], w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        panel.setdefault("datasource", _DS)
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)


def _thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def _timeseries(title: str, targets: list[dict[str, Any]], *, unit: str = "short",
                description: str = "", line_at: float | None = None,
                overrides: list[dict[str, Any]] | None = None,
                minimum: float | None = None, maximum: float | None = None) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit, "custom": {"drawStyle": "line",
                                                        "lineWidth": 2, "fillOpacity": 0,
                                                        "showPoints": "never",
                                                        "spanNulls": True}}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if line_at is not None:  # a red line at the threshold
        defaults["thresholds"] = _thresholds((None, "green"), (line_at, "red"))
        defaults["custom"]["thresholdsStyle"] = {"mode": "line+area"}
    return {"type": "timeseries", "title": title, "description": description,
            "targets": targets, "fieldConfig": {"defaults": defaults,
                                                "overrides": overrides or []},
            "options": {"legend": {"displayMode": "table", "placement": "right",
                                   "showLegend": True, "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}}


def _stat(title: str, expr: str, *, unit: str = "short", description: str = "",
          thresholds: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "stat", "title": title, "description": description,
            "targets": [_target(expr, "", instant=True)],
            "fieldConfig": {"defaults": {"unit": unit, "thresholds": thresholds or _thresholds(
                (None, "green"))}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                          "values": False},
                        "colorMode": "background", "graphMode": "none", "textMode": "auto"}}


def _table(title: str, columns: dict[str, str], *, sort_by: str,
           overrides: list[dict[str, Any]] | None = None,
           description: str | None = None) -> dict[str, Any]:
    """A table of instant queries merged on their labels, one value column per query
    (``columns``: column name → PromQL), sorted by ``sort_by``, highest first."""
    refs = [chr(ord("A") + i) for i in range(len(columns))]
    panel: dict[str, Any] = {
        "type": "table", "title": title,
        "targets": [_target(expr, "", ref, instant=True, format="table")
                    for ref, expr in zip(refs, columns.values(), strict=True)],
        "transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {
                "excludeByName": {"Time": True, "__name__": True, "model": True,
                                  "instance": True, "job": True},
                "renameByName": {f"Value #{ref}": name
                                 for ref, name in zip(refs, columns, strict=True)}}}],
        "fieldConfig": {"defaults": {"decimals": 4}, "overrides": overrides or []},
        "options": {"showHeader": True, "sortBy": [{"displayName": sort_by, "desc": True}]}}
    if description is not None:
        panel["description"] = description
    return panel


def _by_name(name: str, **properties: Any) -> dict[str, Any]:
    return {"matcher": {"id": "byName", "options": name},
            "properties": [{"id": k, "value": v} for k, v in properties.items()]}


def _panels() -> Iterator[tuple[str, dict[str, Any], int, int]]:
    """(row title, panel, width, height) in order."""
    alerting = _thresholds((None, "green"), (1, "red"))
    yield "Overview", _stat("Rows in the latest window", f"watchkeeper_window_rows{{{_M}}}"), 6, 4
    yield "Overview", _stat(
        "Findings alerting", f"sum(watchkeeper_alert_state{{{_M}}} >= bool 1)",
        description="Warning or critical findings in the latest closed window",
        thresholds=alerting), 6, 4
    yield "Overview", _stat(
        "Critical findings", f"sum(watchkeeper_alert_state{{{_M}}} == bool 2)",
        thresholds=alerting), 6, 4
    yield "Overview", _stat(
        "Rows ingested per second",
        f"sum(rate(watchkeeper_ingested_rows_total{{{_M}}}[$__rate_interval]))",
        unit="rowsps"), 6, 4

    yield "Drift", _timeseries(
        "Drift per column, relative to its threshold",
        [_target(f"watchkeeper_drift_distance{{{_M}}} / on(model, column, monitor) "
                 f"watchkeeper_drift_threshold{{{_M}}}", "{{column}}")],
        unit="none", line_at=1.0, minimum=0,
        description="Jensen-Shannon distance of each column from the reference divided by "
                    "its calibrated threshold: above 1 (the red line) the column drifted"), 16, 9
    yield "Drift", _table(
        "Drift now: distance and threshold",
        {"distance": f"watchkeeper_drift_distance{{{_M}}}",
         "threshold": f"watchkeeper_drift_threshold{{{_M}}}"}, sort_by="distance"), 8, 9

    metric = 'metric="$metric"'
    yield "Performance", _timeseries(
        "Performance: realised and estimated ($metric)",
        [_target(f"watchkeeper_performance_realised{{{_M}, {metric}}}", "realised", "A"),
         _target(f"watchkeeper_performance_estimated{{{_M}, {metric}}}", "estimated", "B"),
         _target(f"watchkeeper_performance_estimated_low{{{_M}, {metric}}}", "band low", "C"),
         _target(f"watchkeeper_performance_estimated_high{{{_M}, {metric}}}", "band high",
                 "D")],
        unit="percentunit",
        description="Realised on the labeled rows; estimated from the scores and inputs "
                    "without labels, with the band it is expected in. A realised value "
                    "outside the band means the model got worse on rows like its reference",
        overrides=[_by_name("band high", **{"custom.fillBelowTo": "band low",
                                            "custom.fillOpacity": 15,
                                            "custom.lineWidth": 0, "color": {
                                                "mode": "fixed", "fixedColor": "blue"}}),
                   _by_name("band low", **{"custom.lineWidth": 0, "color": {
                       "mode": "fixed", "fixedColor": "blue"}}),
                   _by_name("realised", color={"mode": "fixed", "fixedColor": "orange"})]), 16, 9
    yield "Performance", _timeseries(
        "Label coverage", [_target(f"watchkeeper_label_coverage{{{_M}}}", "labeled")],
        unit="percentunit", minimum=0, maximum=1,
        description="Share of the latest window's predictions with a label"), 8, 9

    yield "Fairness", _timeseries(
        "Disparate impact ratio per attribute",
        [_target(f"watchkeeper_fairness_di_ratio{{{_M}}}", "{{attribute}}")],
        unit="none", minimum=0, maximum=1,
        description="Lowest over highest selection rate; the four-fifths rule flags values "
                    "under 0.8 (the fairness monitor's own threshold is calibrated)"), 8, 8
    yield "Fairness", _timeseries(
        "Equalised-odds difference per attribute",
        [_target(f"watchkeeper_fairness_eo_difference{{{_M}}}", "{{attribute}}")],
        unit="percentunit", minimum=0), 8, 8
    yield "Fairness", _timeseries(
        "Selection rate per group",
        [_target(f"watchkeeper_fairness_selection_rate{{{_M}}}", "{{attribute}}: {{group}}")],
        unit="percentunit", minimum=0, maximum=1), 8, 8

    yield "Out-of-distribution inputs", _timeseries(
        "Out-of-distribution share",
        [_target(f"watchkeeper_ood_share{{{_M}}}", "OOD share"),
         _target(f'watchkeeper_finding_threshold{{{_M}, monitor="ood_share"}}',
                 "threshold (when alerting)", "B")],
        unit="percentunit", minimum=0,
        description="Share of rows the security model scores as out of the reference "
                    "distribution; the threshold shows while the monitor has a finding"), 12, 8
    yield "Out-of-distribution inputs", _timeseries(
        "Security findings",
        [_target(f'watchkeeper_alert_state{{{_M}, monitor=~"ood_share|client_volume|'
                 f'near_duplicates|extraction_coverage|rejected_requests|boundary_probing"}}',
                 "{{monitor}} {{segment}}")],
        unit="none", minimum=0, maximum=2,
        description="0 ok, 1 warning, 2 critical"), 12, 8

    yield "Service", _timeseries(
        "Latency", [_target(f"watchkeeper_latency_ms{{{_M}}}", "{{quantile}}")], unit="ms",
        minimum=0), 8, 8
    yield "Service", _timeseries(
        "Ingest", [_target(f"sum by (kind) (rate(watchkeeper_ingested_rows_total{{{_M}}}"
                           "[$__rate_interval]))", "{{kind}} rows/s"),
                   _target(f"rate(watchkeeper_late_rows_total{{{_M}}}[$__rate_interval])",
                           "late rows/s", "B"),
                   _target(f"watchkeeper_sdk_dropped_rows{{{_M}}}", "dropped by SDKs", "C")],
        unit="short", minimum=0), 8, 8
    yield "Service", _timeseries(
        "Refused and set-aside batches",
        [_target("sum by (reason) (rate(watchkeeper_rejected_batches_total"
                 "[$__rate_interval]))", "refused: {{reason}}"),
         _target(f"watchkeeper_quarantined_batches{{{_M}}}", "quarantined", "B")],
        unit="short", minimum=0,
        description="Refusals are counted for the whole server (not per model)"), 8, 8

    yield "Rules", _timeseries(
        "Rule violation rate",
        [_target(f"watchkeeper_rule_violation_rate{{{_M}}}", "{{rule}}"),
         _target(f'watchkeeper_finding_threshold{{{_M}, monitor="rule"}}',
                 "{{metric}} threshold (when alerting)", "B")],
        unit="percentunit", minimum=0), 24, 7

    yield "Findings", _table(
        "Findings in the latest closed window",
        {"value": f"watchkeeper_finding_value{{{_M}}}",
         "threshold": f"watchkeeper_finding_threshold{{{_M}}}",
         "state": f"watchkeeper_alert_state{{{_M}}}"}, sort_by="state",
        overrides=[_by_name(
            "state", decimals=0, **{"custom.cellOptions": {"type": "color-background"}},
            thresholds=_thresholds((None, "green"), (1, "orange"), (2, "red")))],
        description="0 ok/info, 1 warning, 2 critical"), 24, 9


def dashboard(model: str, *, uid: str | None = None) -> dict[str, Any]:
    """The dashboard JSON of ``model`` (the model variable's default; the others on the
    server are one click away)."""
    if not isinstance(model, str) or not _MODEL_NAME.fullmatch(model):
        raise SuiteError("model", f"expected a model name (letters, digits, _ . : -), "
                                  f"got {model!r}")
    layout = _Layout()
    current = None
    for row, panel, w, h in _panels():
        if row != current:
            layout.row(row)
            current = row
        layout.add(panel, w, h)
    variables = [
        {"name": "datasource", "label": "Prometheus", "type": "datasource",
         "query": "prometheus", "hide": 0, "refresh": 1},
        {"name": "model", "label": "model", "type": "query", "datasource": _DS,
         "query": {"query": "label_values(watchkeeper_window_rows, model)",
                   "refId": "model"},
         "current": {"selected": True, "text": model, "value": model},
         "refresh": 2, "sort": 1, "hide": 0, "includeAll": False, "multi": False},
        {"name": "metric", "label": "performance metric", "type": "query", "datasource": _DS,
         "query": {"query": f"label_values(watchkeeper_performance_estimated{{{_M}}}, metric)",
                   "refId": "metric"},
         "current": {"selected": True, "text": "accuracy", "value": "accuracy"},
         "refresh": 2, "sort": 1, "hide": 0, "includeAll": False, "multi": False},
    ]
    return {
        "uid": uid or f"watchkeeper-{re.sub(r'[^A-Za-z0-9_-]', '-', model)}"[:40],
        "title": f"watchkeeper: {model}",
        "description": "Model monitoring by watchkeeper: the latest closed window of each "
                       "monitor, as the server's /metrics exposes it",
        "tags": ["watchkeeper", "ml-monitoring"],
        "timezone": "utc", "editable": True, "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION, "version": 1,
        "time": {"from": "now-7d", "to": "now"}, "refresh": "1m",
        "templating": {"list": variables},
        "annotations": {"list": [{
            "name": "Annotations & Alerts", "builtIn": 1, "enable": True, "hide": True,
            "type": "dashboard", "iconColor": "rgba(0, 211, 255, 1)",
            "datasource": {"type": "grafana", "uid": "-- Grafana --"}}]},
        "links": [],
        "panels": layout.panels,
    }


def provisioning(folder: str) -> str:
    """A Grafana dashboard provider (``provisioning/dashboards/watchkeeper.yaml``) that
    loads the dashboards in ``folder`` (where Grafana sees the JSON files)."""
    return ("# Grafana loads the watchkeeper dashboards from this folder (copy this file to\n"
            "# /etc/grafana/provisioning/dashboards/). Written by `watchkeeper grafana`.\n"
            "apiVersion: 1\nproviders:\n  - name: watchkeeper\n    folder: watchkeeper\n"
            "    type: file\n    disableDeletion: false\n    allowUiUpdates: true\n"
            "    updateIntervalSeconds: 30\n"
            f"    options:\n      path: {json.dumps(folder)}\n"
            "      foldersFromFilesStructure: false\n")


def expressions(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard: its panels' queries and its variables'."""
    out = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    out += [v["query"]["query"] for v in board["templating"]["list"]
            if isinstance(v.get("query"), dict)]
    return out


def write(model: str, output: str | Path, folder: str | None = None) -> tuple[Path, Path]:
    """Write ``watchkeeper-MODEL.json`` and ``provisioning.yaml`` into ``output``; the
    provider points Grafana at ``folder`` (default: ``output``, resolved)."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    board = dashboard(model)
    json_path = out / f"watchkeeper-{model}.json"
    write_atomic(json_path, json.dumps(board, indent=2) + "\n")
    yaml_path = out / "provisioning.yaml"
    write_atomic(yaml_path, provisioning(folder or str(out.resolve())))
    return json_path, yaml_path
