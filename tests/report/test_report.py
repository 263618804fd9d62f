"""The self-contained HTML report: structure, self-containment, escaping, odd inputs, CLI."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import watchkeeper as wk
from tests.helpers import ACS, policy_suite, run, two_groups
from watchkeeper.io.datasets import synthetic_drift_pair
from watchkeeper.online.replay import replay
from watchkeeper.report import render, write

XSS = "<script>alert(1)</script>"
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}
SVG_LEAVES = {"line", "circle", "rect", "polygon", "polyline", "path"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node] = []
        self.content: list[Node | str] = []  # children and text, in document order

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.content)

    def find_all(self, tag: str, cls: str | None = None) -> list[Node]:
        found = [c for c in self.children if c.tag == tag and (cls is None or cls in c.classes)]
        for c in self.children:
            found += c.find_all(tag, cls)
        return found

    def find(self, tag: str, cls: str | None = None, **attrs: str) -> Node:
        for n in self.find_all(tag, cls):
            if all(n.attrs.get(k.rstrip("_")) == v for k, v in attrs.items()):
                return n
        raise AssertionError(f"no <{tag} class={cls} {attrs}>")


class Tree(HTMLParser):
    """A small DOM, strict about nesting: every closing tag must close the open element."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.current = self.root
        self.feed(markup)
        self.close()
        assert self.current is self.root, f"<{self.current.tag}> never closed"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(node)
        self.current.content.append(node)
        if tag not in VOID:
            self.current = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(node)
        self.current.content.append(node)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.current.tag == tag, f"</{tag}> closes <{self.current.tag}>"
        assert self.current.parent is not None
        self.current = self.current.parent

    def handle_data(self, data: str) -> None:
        self.current.content.append(data)


def parse(markup: str) -> Node:
    return Tree(markup).root


def section(root: Node, anchor: str) -> Node:
    return root.find("section", id=f"wk-{anchor}")


def body_rows(table: Node) -> list[Node]:
    return table.find("tbody").find_all("tr")


# ------------------------------------------------------------------ the ACS check


@pytest.fixture(scope="module")
def acs_result() -> dict[str, Any]:
    """A suite built on 15k reference rows; 2016-2018 analysis samples with their labels,
    ages in 2018 moved up 15 years so that window has drift, range and fairness findings."""
    rng = np.random.default_rng(0)
    reference = pq.read_table(ACS / "employment_MA_reference.pq")
    reference = reference.take(rng.choice(reference.num_rows, 15_000, replace=False))
    suite = wk.init(reference, target="employed")
    analysis = pq.read_table(ACS / "employment_MA_analysis.pq")
    analysis = analysis.take(np.sort(rng.choice(analysis.num_rows, 18_000, replace=False)))
    age, year = analysis.column("AGEP").to_numpy(), analysis.column("year").to_numpy()
    analysis = analysis.set_column(analysis.column_names.index("AGEP"), "AGEP",
                                   pa.array(np.where(year == 2018, age + 15, age)))
    labels = pq.read_table(ACS / "employment_MA_analysis_target.pq")
    labels = labels.filter(pc.is_in(labels.column("id"), analysis.column("id")))
    return suite.check(analysis, window_by="year", labels=labels).to_dict()


@pytest.fixture(scope="module")
def acs_html(acs_result: dict[str, Any]) -> str:
    return render(acs_result, title="ACS employment")


def test_header_counts_windows_and_findings_by_severity(acs_result, acs_html) -> None:
    root = parse(acs_html)
    header = root.find("header")
    assert "ACS employment" in header.find("h1").text()
    cards = {c.find("span", "small").text(): c.find("span", "big").text()
             for c in header.find_all("div", "card")}
    findings = [f for w in acs_result["windows"] for f in w["findings"]]
    assert cards["windows"] == "3"
    assert cards["rows"] == f"{sum(w['rows'] for w in acs_result['windows']):,}"
    for severity in ("critical", "warning", "info"):
        assert cards[severity] == str(sum(f["severity"] == severity for f in findings))
    # the navigation links only to sections that exist
    for link in header.find("nav").find_all("a"):
        section(root, link.attrs["href"].removeprefix("#wk-"))


def test_summary_has_one_row_per_window_with_counts_and_accuracy(acs_result,
                                                                 acs_html) -> None:
    rows = body_rows(section(parse(acs_html), "summary").find("table"))
    assert len(rows) == 3
    for row, w in zip(rows, acs_result["windows"], strict=True):
        cells = [td.text() for td in row.find_all("td")]
        assert cells[0] == w["window"] and cells[1] == f"{w['rows']:,}"
        counts = [sum(f["severity"] == s for f in w["findings"])
                  for s in ("critical", "warning", "info")]
        assert [int(c) for c in cells[3:6]] == counts
        assert cells[6] == "100.0%"  # every sampled row has its label
        assert cells[7] == f"{w['metrics']['realised']['accuracy']:.3f}"
    assert "critical" in rows[2].find("span", "badge").classes


def test_a_window_nobody_could_judge_is_not_shown_as_ok() -> None:
    result = {"suite": "s.yaml", "windows": [
        {"window": "rows 0-999", "rows": 1000, "status": "ok", "findings": []},
        {"window": "rows 1000-1000", "rows": 1, "status": "not_evaluated", "findings": [],
         "not_evaluated": [
             {"monitor": "performance", "column": None, "status": "not_evaluated",
              "reason": "labeled n < 100"},
             {"monitor": "feature_drift", "column": "x", "status": "not_evaluated",
              "reason": "n < 30"}]}]}
    ok, small = body_rows(section(parse(render(result)), "summary").find("table"))
    assert ok.find("span", "badge").text() == "ok"
    assert small.find("span", "badge").text() == "not evaluated"
    assert "performance (labeled n < 100); feature_drift (n < 30)" in small.text()


def test_findings_are_grouped_by_family_critical_first(acs_result, acs_html) -> None:
    findings = section(parse(acs_html), "findings")
    every = [f for w in acs_result["windows"] for f in w["findings"]]
    tables = findings.find_all("table")
    assert sum(len(body_rows(t)) for t in tables) == len(every)
    rows = body_rows(findings.find("div", "family", id="wk-family-drift").find("table"))
    severities = [r.find("span", "badge").text() for r in rows]
    assert severities == sorted(severities, key=["critical", "warning", "info"].index)
    first = [td.text() for td in rows[0].find_all("td")]
    assert first[:3] == ["year=2018", "feature_drift", "AGEP"] and first[5] == "critical"
    assert "AGEP distribution changed" in first[6]
    families = [d.attrs["id"].removeprefix("wk-family-")
                for d in findings.find_all("div", "family")]
    assert families == [f for f in ("quality", "drift", "performance",
                                    "estimated_performance", "fairness", "service",
                                    "security") if any(x["family"] == f for x in every)]


def test_performance_charts_have_one_point_per_window(acs_result, acs_html) -> None:
    perf = section(parse(acs_html), "performance")
    accuracy = perf.find("div", "chart-box", **{"data-metric": "accuracy"})
    realised = accuracy.find_all("circle", "pt-realised")
    estimated = accuracy.find_all("circle", "pt-estimated")
    assert len(realised) == len(estimated) == 3
    # the points run left to right, and their tooltip carries the value
    xs = [float(c.attrs["cx"]) for c in realised]
    assert xs == sorted(xs) and len(set(xs)) == 3
    value = acs_result["windows"][1]["metrics"]["realised"]["accuracy"]
    assert realised[1].find("title").text() == f"year=2017: realised {value:.4g}"
    assert accuracy.find_all("polygon", "band")  # the estimate's band is shaded
    metrics = {d.attrs["data-metric"] for d in perf.find_all("div", "chart-box")}
    assert {"accuracy", "roc_auc", "f1", "precision", "recall"} <= metrics
    assert len(body_rows(perf.find_all("table")[0])) == 3


def test_drift_shows_every_monitored_column_against_its_threshold(acs_result,
                                                                  acs_html) -> None:
    drift = section(parse(acs_html), "drift")
    measured = [w["metrics"]["drift"] for w in acs_result["windows"]]
    columns = set(measured[0])
    assert {"AGEP", "SCHL", "prediction", "predicted_probability", "employed"} <= columns
    drifted = {f["column"] or "(joint)" for w in acs_result["windows"]  # multivariate_drift
               for f in w["findings"] if f["family"] == "drift"}
    assert drifted and drifted < columns  # the columns below their threshold are shown too
    chart = drift.find("svg")
    assert len(chart.find_all("rect")) == len(columns)
    assert len(chart.find_all("line", "marker")) == len(columns)  # one threshold tick each
    rows = body_rows(drift.find("table", "drift-columns"))
    cells = {r.find("td").content[0]: [td.text() for td in r.find_all("td")] for r in rows}
    assert set(cells) == columns
    for column, row in cells.items():
        worst = max(range(3), key=lambda i: (measured[i][column]["js"]
                                             / measured[i][column]["threshold"], i))
        entry = measured[worst][column]
        assert row[2] == f"{entry['js']:.3g}" and row[3] == f"{entry['threshold']:.3g}"
        assert row[6] == acs_result["windows"][worst]["window"]
        assert row[1] in (("critical", "warning") if column in drifted else ("below",))
    # ranked by distance relative to threshold: the shifted age first, in 2018, twice over
    top = [td.text() for td in rows[0].find_all("td")]
    assert top[0] == "AGEP" and top[1] == "critical" and top[6] == "year=2018"
    assert top[7] == "2"
    assert "model output" in cells["prediction"][0] and "target" in cells["employed"][0]
    # every row's sparkline: a point per window, red where past the threshold
    agep = rows[0].find("svg", "spark")
    assert len(agep.find_all("circle")) == 3 and len(agep.find_all("circle", "past")) == 2
    quiet = next(r for r in rows if r.find("td").content[0] not in drifted)
    assert not quiet.find("svg", "spark").find_all("circle", "past")
    # and the distance of every column in every window
    per_window = drift.find("table", "drift-windows")
    assert [th.text() for th in per_window.find_all("th")][1:] == [
        "year=2016", "year=2017", "year=2018"]
    assert len(body_rows(per_window)) == len(columns)


def test_drift_falls_back_on_findings_without_measures() -> None:
    """Results saved before windows carried drift measures still show drifted columns."""
    finding = {"monitor": "feature_drift", "family": "drift", "column": "age", "value": 0.3,
               "threshold": 0.1, "severity": "critical", "evidence": {"psi": 0.4}}
    root = parse(render({"windows": [{"window": "a", "findings": [finding]},
                                     {"window": "b"}]}))
    rows = body_rows(section(root, "drift").find("table", "drift-columns"))
    assert [[td.text() for td in r.find_all("td")][:7] for r in rows] == [
        ["age", "critical", "0.3", "0.1", "3", "0.4", "a"]]


def test_fairness_tables_show_groups_measures_and_the_four_fifths_rule(acs_result,
                                                                       acs_html) -> None:
    fairness = section(parse(acs_html), "fairness")
    attributes = list(acs_result["windows"][-1]["metrics"]["fairness"])
    assert [h.text() for h in fairness.find_all("h3")] == attributes
    latest = acs_result["windows"][-1]["metrics"]["fairness"]
    text = fairness.text()
    assert "insufficient data" in text
    for summary in latest.values():
        if "dp_difference" in summary:
            assert f"95% CI {summary['dp_difference'][1]:.3f}" in text
            high, low = summary["dp_groups"]
            assert f"{high} vs {low}" in text
        if "eo_difference" in summary:
            high, low = summary["eo_groups"]
            assert f"{summary['eo_metric'].upper()}: {high} vs {low}" in text
    # the four-fifths line is drawn on every group chart, and broken groups are red
    charts = [s for s in fairness.find_all("svg") if "four-fifths" in s.text()]
    assert charts
    sex = next(s for s in charts if "SEX=1" in s.text())
    assert len(sex.find_all("rect")) == 2


def test_a_ratio_already_below_four_fifths_in_the_reference_is_not_a_change(
        acs_result, acs_html) -> None:
    """AGEP: under-18s are almost never employed, in the reference as in every window; the
    report says so and does not flag it as a change."""
    fairness = section(parse(acs_html), "fairness")
    age = acs_result["windows"][-1]["metrics"]["fairness"]["AGEP"]
    assert age["reference"]["di_ratio"] < 0.8 and age["di_ratio"] < 0.8
    parts = fairness.children
    heading = next(i for i, n in enumerate(parts) if n.tag == "h3" and n.text() == "AGEP")
    note, trend = parts[heading + 1], parts[heading + 2]
    assert "inherited" in note.classes
    assert f"already {age['reference']['di_ratio']:.3f} in the reference" in note.text()
    rows = body_rows(trend)
    assert rows[0].find("td").text() == "reference"
    assert len(rows) == 1 + len(acs_result["windows"])
    for row in rows[1:]:
        di = row.find_all("td")[4]
        assert di.find_all("span", "inherited") and not di.find_all("span", "flag")
        assert f"reference {age['reference']['di_ratio']:.3f}, already below" in di.text()
    # SEX is near parity in the reference and in every window: nothing to mark
    sex = next(i for i, n in enumerate(parts) if n.tag == "h3" and n.text() == "SEX")
    assert parts[sex + 1].tag == "table"
    assert not parts[sex + 1].find_all("span", "inherited")


def fairness_window(label: str, di: float, reference_di: float = 0.95,
                    attribute: str = "SEX") -> dict[str, Any]:
    """A window whose two groups of ``attribute`` have this disparate-impact ratio."""
    high, low = f"{attribute}=1", f"{attribute}=2"
    return {"window": label, "metrics": {"fairness": {attribute: {
        "groups": {high: {"n": 500, "selection_rate": 0.5},
                   low: {"n": 500, "selection_rate": 0.5 * di}},
        "dp_difference": [0.5 - 0.5 * di, 0.1, 0.3], "dp_groups": [high, low],
        "di_ratio": di, "reference": {"dp_difference": 0.02, "di_ratio": reference_di,
                                      "eo_difference": 0.03}}}}}


def test_a_new_break_of_the_four_fifths_rule_is_flagged() -> None:
    root = parse(render({"windows": [fairness_window("a", 0.9), fairness_window("b", 0.6)]}))
    fairness = section(root, "fairness")
    assert not fairness.find_all("p", "inherited")
    rows = body_rows(fairness.find("table"))
    assert [td.text() for td in rows[0].find_all("td")][4] == "0.950"  # the reference row
    calm, broken = rows[1].find_all("td")[4], rows[2].find_all("td")[4]
    assert not calm.find_all("span", "flag")
    assert broken.find("span", "flag").text() == "0.600 < 0.8"
    assert "new: reference 0.950" in broken.text()


def test_the_group_chart_tells_an_inherited_break_from_a_new_one(acs_html) -> None:
    new, known = fairness_window("w", 0.6), fairness_window("w", 0.5, 0.4, "AGE")
    new["metrics"]["fairness"].update(known["metrics"]["fairness"])
    fairness = section(parse(render({"windows": [new]})), "fairness")
    bars = {r.find("title").text().split(":")[0]: r for r in fairness.find_all("rect")}
    low = {name: bars[f"{name}=2"] for name in ("SEX", "AGE")}
    assert {"critical"} <= low["SEX"].classes and "inherited" not in low["SEX"].classes
    assert {"inherited"} <= low["AGE"].classes and "critical" not in low["AGE"].classes
    legends = [p.text() for p in fairness.find_all("p", "legend")]
    assert legends == ["below 0.8 since the reference (0.950): new",
                       "already below 0.8 in the reference (0.400): not a change"]
    # on the ACS data, age's ratio is far below the line in the reference already
    fairness = section(parse(acs_html), "fairness")
    age = next(s for s in fairness.find_all("svg") if "AGEP=" in s.text())
    assert age.find_all("rect", "inherited") and not age.find_all("rect", "critical")


def test_the_suites_disparate_impact_policy_draws_the_line_and_flags() -> None:
    """min_di_ratio 0.9 in the suite file: a ratio of 0.85 breaks it (not the 0.8 rule)."""
    suite = policy_suite(two_groups(0.5), 0.9)
    result = suite.check(two_groups(0.425)).to_dict()
    fairness = section(parse(render(result)), "fairness")
    chart = next(s for s in fairness.find_all("svg") if "gender=a" in s.text())
    bars = {r.find("title").text().split(":")[0]: r for r in chart.find_all("rect")}
    assert "critical" in bars["gender=a"].classes and "ok" in bars["gender=b"].classes
    line, top = chart.find("line", "reference"), bars["gender=b"]  # the top bar is 1.0 wide
    assert float(line.attrs["x1"]) == pytest.approx(
        float(top.attrs["x"]) + 0.9 * float(top.attrs["width"]), abs=0.1)
    assert "policy 0.9" in chart.text() and "four-fifths" not in chart.text()
    di = body_rows(fairness.find("table"))[-1].find_all("td")[4]
    assert di.find("span", "flag").text() == "0.850 < 0.9"
    assert "below 0.9 breaks the suite's disparate-impact policy" in fairness.text()
    assert "0.8" not in fairness.text().replace("0.85", "")


def test_security_section_from_the_measured_ood_share(acs_result, acs_html) -> None:
    security = section(parse(acs_html), "security")
    rows = body_rows(security.find("table"))
    assert len(rows) == 3
    measured = acs_result["windows"][2]["metrics"]["security"]
    assert [td.text() for td in rows[2].find_all("td")][2] == f"{measured['ood_rows']:,}"
    histogram = next(s for s in security.find_all("svg") if "score" in s.attrs["aria-label"])
    assert len(histogram.find_all("rect")) == len(measured["ood_score_histogram"]["counts"])
    assert histogram.find_all("rect", "flagged")


def test_the_report_is_self_contained(acs_html) -> None:
    assert not re.search(r"https?://|//[a-z]", acs_html, re.I)
    root = parse(acs_html)
    for tag in ("script", "link", "img", "iframe", "object", "embed"):
        assert not root.find_all(tag), tag
    for node in root.find_all("a"):
        assert node.attrs["href"].startswith("#")
    assert "url(" not in acs_html and "@import" not in acs_html
    assert not any("src" in n.attrs for n in _all(root))
    ids = [n.attrs["id"] for n in _all(root) if "id" in n.attrs]
    assert len(ids) == len(set(ids))


def _inside_svg(node: Node) -> bool:
    while node.parent is not None:
        node = node.parent
        if node.tag == "svg":
            return True
    return False


def _all(node: Node) -> list[Node]:
    return [node, *(d for c in node.children for d in _all(c))]


def test_the_same_input_gives_the_same_bytes(acs_result, acs_html) -> None:
    assert render(json.loads(json.dumps(acs_result)), title="ACS employment") == acs_html
    assert "generated" not in parse(acs_html).find("header").text()
    dated = render(acs_result, generated="2026-01-01 09:00 UTC")
    assert "generated 2026-01-01 09:00 UTC" in dated


def test_fragment_is_only_the_block_with_scoped_style(acs_result) -> None:
    fragment = render(acs_result, fragment=True)
    assert not re.search(r"<(!doctype|html|head|body|meta)\b", fragment, re.I)
    root = parse(fragment)
    assert all(_inside_svg(t) for t in root.find_all("title"))  # tooltips only
    assert [c.tag for c in root.children] == ["div"]
    assert root.children[0].classes == {"wk-report"}
    css = root.children[0].find("style").text()
    selectors = [s.strip() for block in re.findall(r"([^{}]+)\{", css) for s in
                 block.split(",")]
    assert selectors and all(s.startswith(".wk-report") for s in selectors)
    assert fragment in render(acs_result)  # the page wraps the same block


# -------------------------------------------------------------------- odd inputs


def test_an_empty_result_renders() -> None:
    for result in ({"suite": "s.yaml", "windows": []}, {}, {"windows": None}):
        root = parse(render(result))
        assert "No windows" in section(root, "summary").text()
        assert "No findings" in section(root, "findings").text()
        assert not root.find_all("svg")


def test_windows_without_labels_metrics_or_keys_render() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    api_windows = [{"start": (start + timedelta(hours=i)).isoformat(),
                    "end": (start + timedelta(hours=i + 1)).isoformat(), "rows": 100,
                    "state": "closed", "suite_version": 1} for i in range(3)]
    api_windows[1]["metrics"] = {"estimated": {"accuracy": 0.8},
                                 "estimated_band": {"accuracy": [0.7, 0.9]}}
    api_windows[2]["metrics"] = {"realised": {"rows": 100, "labeled": 40, "accuracy": 0.75},
                                 "estimated": {"accuracy": 0.78}}
    api_windows[2]["findings"] = [{"monitor": "missing_rate", "severity": "weird"}, {}]
    root = parse(render({"windows": [*api_windows, {}]}))
    rows = body_rows(section(root, "summary").find("table"))
    assert len(rows) == 4
    cells = [[td.text() for td in r.find_all("td")] for r in rows]
    assert cells[0][0] == "00:00–01:00" and cells[0][6] == "closed"  # one day: clocks only
    assert cells[2][7] == "40.0%" and cells[3][0] == "window 4"
    chart = section(root, "performance").find("div", "chart-box", **{"data-metric": "accuracy"})
    assert [t.text() for t in chart.find_all("text", "tick")][-4:] == [
        "00:00", "01:00", "02:00", "window 4"]  # time windows read as clocks
    assert len(chart.find_all("circle", "pt-realised")) == 1  # only the labeled window
    assert len(chart.find_all("circle", "pt-estimated")) == 2
    assert len(body_rows(section(root, "findings").find("table"))) == 2


def test_a_check_without_labels_renders_estimates_only(acs_result) -> None:
    windows = [{**w, "metrics": {k: v for k, v in w["metrics"].items()
                                 if k not in ("realised", "confusion", "label_coverage")}}
               for w in acs_result["windows"]]
    root = parse(render({**acs_result, "windows": windows}))
    perf = section(root, "performance")
    assert not perf.find_all("circle", "pt-realised")
    assert len(perf.find("div", "chart-box", **{"data-metric": "accuracy"})
               .find_all("circle", "pt-estimated")) == 3
    assert [td.text() for td in body_rows(section(root, "summary").find("table"))[0]
            .find_all("td")][6:8] == ["–", "–"]


def test_user_provided_text_is_escaped() -> None:
    result = {"suite": XSS, "windows": [{
        "window": XSS, "rows": 10,
        "findings": [{"monitor": XSS, "family": XSS, "column": XSS, "segment": None,
                      "value": 1.0, "threshold": 0.5, "severity": "critical", "message": XSS,
                      "evidence": {XSS: XSS}},
                     {"monitor": "feature_drift", "family": "drift", "column": XSS,
                      "value": 0.3, "threshold": 0.1, "severity": "warning"}],
        "metrics": {"realised": {"accuracy": 0.9}, "fairness": {XSS: {"groups": {
            XSS: {"n": 500, "selection_rate": 0.5}, "b": {"n": 400, "selection_rate": 0.2},
            f"{XSS}2": {"n": 3, "status": XSS}}, "di_ratio": 0.4}},
            "security": {"rows": 10, "ood_rows": 1, "ood_share": 0.1,
                         "top_offenders": {XSS: 1},
                         "clients": [{"client": XSS, "rows": 10, XSS: XSS}],
                         "ood_score_histogram": {"edges": [XSS, 1.0], "counts": [1, 2, 3]}},
        }}]}
    incident = {"id": XSS, "title": XSS, "severity": XSS, "status": XSS, "opened": XSS,
                "alerts": [{"monitor": XSS, "column": XSS, "message": XSS, "state": XSS}],
                "advice": {"diagnosis": XSS, "began": XSS, "actions": [XSS],
                           "causes": [{"kind": XSS, "name": XSS, "score": 1, "detail": XSS}]}}
    for html in (render(result, title=XSS, incidents=[incident]),
                 render(result, title=XSS, incidents=[incident], fragment=True)):
        assert XSS not in html and "<script" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        parse(html)  # still well-formed


def test_incidents_show_diagnosis_ranked_causes_and_actions() -> None:
    reference, _ = synthetic_drift_pair(6_000, seed=3)
    suite = wk.init(reference)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    windows = []
    for i in range(6):
        _, current = synthetic_drift_pair(3_000, seed=100 + i, drift=i >= 2)
        windows.append((f"day {i}", t0 + timedelta(days=i), current))
    run = replay(suite, windows)
    advice = run.advice()
    incidents = [{**inc.to_dict(), "advice": advice[key].to_dict()}
                 for key, inc in run.manager.incidents.items()]
    assert incidents
    html = render(run.result.to_dict(), incidents=incidents)
    cards = section(parse(html), "incidents").find_all("div", "incident")
    assert len(cards) == len(incidents)
    for card, incident in zip(cards, sorted(incidents, key=lambda i: i["status"] == "resolved"),
                              strict=False):
        text = card.text()
        assert incident["advice"]["diagnosis"] in text
        causes = [li.text() for li in card.find("ol").find_all("li")]
        assert [c.split(" (")[0] for c in causes] == [
            c["name"] for c in incident["advice"]["causes"][:8]]
        assert len(card.find("ul").find_all("li")) == len(incident["advice"]["actions"])


def test_server_window_labels_read_as_dates_and_clocks_everywhere() -> None:
    """Server windows and the incidents over them are labelled start/end in ISO 8601."""
    start = datetime(2026, 1, 1, 10, tzinfo=UTC)
    labels = [f"{(start + timedelta(minutes=5 * i)).isoformat()}/"
              f"{(start + timedelta(minutes=5 * i + 5)).isoformat()}" for i in range(2)]
    finding = {"monitor": "feature_drift", "family": "drift", "column": "x", "value": 0.3,
               "threshold": 0.1, "severity": "warning", "window": labels[1]}
    windows = [{"window": label, "start": label.split("/")[0], "end": label.split("/")[1],
                "rows": 10, "findings": [finding] if i else []}
               for i, label in enumerate(labels)]
    incident = {"id": "abc", "title": "drift on x", "severity": "warning", "status": "open",
                "opened": labels[1], "last_window": labels[1],
                "advice": {"diagnosis": "covariate drift", "began": labels[0]}}
    root = parse(render({"windows": windows}, incidents=[incident]))
    text = root.text()
    assert "T10:0" not in text and "+00:00" not in text
    meta = section(root, "incidents").find("div", "meta").text()
    assert "opened 2026-01-01 10:05–10:10 UTC" in meta
    assert "since 2026-01-01 10:00–10:05 UTC" in section(root, "incidents").text()
    # windows of one day are listed by their clocks; the header gives the date
    assert "2026-01-01 10:00–10:10 UTC" in root.find("header").find("p", "subtitle").text()
    findings = body_rows(section(root, "findings").find("table"))
    assert findings[0].find("td").text() == "10:05–10:10"
    summary = body_rows(section(root, "summary").find("table"))
    assert [r.find("td").text() for r in summary] == ["10:00–10:05", "10:05–10:10"]
    # windows over more than one day keep their dates
    windows[1] = {**windows[1], "window": "2026-01-02T10:05:00+00:00/2026-01-02T10:10:00+00:00"}
    summary = body_rows(section(parse(render({"windows": windows})), "summary").find("table"))
    assert [r.find("td").content[0] for r in summary] == [
        "2026-01-01 10:00–10:05 UTC", "2026-01-02 10:05–10:10 UTC"]


def test_a_target_without_a_model_output_shows_label_coverage_only() -> None:
    """A column inferred as the target (here "y") with no prediction column: every row is
    labeled, but there is no model output to score, so no accuracy is shown."""
    rng = np.random.default_rng(0)
    suite = wk.init(pa.table({"x": rng.normal(size=2_000), "y": rng.choice(["a", "b"], 2_000)}))
    assert suite.schema.task.target == "y" and suite.schema.task.prediction is None
    current = pa.table({"x": rng.normal(size=400), "y": rng.choice(["a", "b"], 400)})
    result = suite.check(current).to_dict()
    assert result["windows"][0]["metrics"]["realised"] == {"rows": 400, "labeled": 400}
    root = parse(render(result))
    summary = section(root, "summary").find("table")
    assert [th.text() for th in summary.find_all("th")][-1] == "labeled"
    assert [td.text() for td in body_rows(summary)[0].find_all("td")][-1] == "100.0%"
    assert "wk-performance" not in {s.attrs.get("id") for s in root.find_all("section")}


def test_security_histogram_bins_from_interior_or_full_edges() -> None:
    from watchkeeper.report.sections import score_bins

    assert [b[0] for b in score_bins([0.5, 1.0], 3)] == ["≤0.5", "0.5–1", ">1"]
    assert [b[0] for b in score_bins([0, 1, 2], 2)] == ["0–1", "1–2"]
    assert [b[0] for b in score_bins([1], 5)] == [f"bin {i}" for i in range(1, 6)]


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = write(tmp_path / "r.html", render({}))
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
    with pytest.raises(OSError):
        write(tmp_path / "missing" / "r.html", "x")


# ---------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("report")
    reference, current = synthetic_drift_pair(8_000, seed=21)
    pq.write_table(reference, d / "ref.parquet")
    pq.write_table(current, d / "cur.parquet")
    assert run("init", "ref.parquet", cwd=d).returncode == 0
    return d


def test_cli_report_checks_the_data_and_writes_the_file(workdir: Path) -> None:
    done = run("report", "cur.parquet", "--window-rows", "2000", "-o", "r.html", cwd=workdir)
    assert done.returncode == 0, done.stderr
    # the data drifted from the first window on: the check's own incidents are shown
    assert re.fullmatch(r"wrote r\.html: 4 window\(s\), \d+ finding\(s\), [1-9]\d* "
                        r"incident\(s\)\n", done.stdout)
    root = parse((workdir / "r.html").read_text(encoding="utf-8"))
    assert "cur.parquet" in root.find("h1").text()
    assert "Diagnosis: covariate drift" in section(root, "incidents").text()
    assert len(body_rows(section(root, "summary").find("table"))) == 4
    assert "num_00" in section(root, "findings").text()


def test_cli_check_writes_the_report_alongside_json(workdir: Path) -> None:
    done = run("check", "cur.parquet", "--window-rows", "4000", "--format", "json",
               "--report", "c.html", "--fail-on", "warning", cwd=workdir)
    assert done.returncode == 1, done.stderr  # the gate still works
    result = json.loads(done.stdout)  # stdout is still pure JSON
    assert "wrote c.html" in done.stderr
    html = (workdir / "c.html").read_text(encoding="utf-8")
    (workdir / "result.json").write_text(done.stdout, encoding="utf-8")
    again = run("report", "--from", "result.json", "-o", "from.html", "--title", "T",
                cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert (workdir / "from.html").read_text(encoding="utf-8") == html.replace(
        "watchkeeper report: cur.parquet", "T")
    assert len(result["windows"]) == 2


@pytest.mark.parametrize(("args", "message"), [
    (("report",), "give either the data to check (CURRENT) or --from"),
    (("report", "cur.parquet", "--from", "x.json"), "give either"),
    (("report", "--from", "nope.json"), "nope.json: no such file"),
    (("report", "--from", "ref.parquet"), "ref.parquet: cannot read it"),
    (("report", "--from", "bad.json"), "bad.json: not a check result"),
    (("report", "--from", "list.json"), "list.json: not a check result"),
    (("report", "--from", "list.json", "--window-rows", "5"), "apply only when checking"),
    (("report", "missing.parquet"), "missing.parquet: no such file"),
    (("report", "cur.parquet", "-o", "no/such/dir/r.html"), "cannot write the report"),
    (("report", "cur.parquet", "--window-by", "colour"), "'colour' is not in the data"),
    (("check", "cur.parquet", "--report", "no/such/dir/r.html"), "cannot write the report"),
])
def test_cli_errors_are_one_line_with_exit_code_2(workdir: Path, args: tuple[str, ...],
                                                  message: str) -> None:
    (workdir / "bad.json").write_text("{not json", encoding="utf-8")
    (workdir / "list.json").write_text("[1, 2]", encoding="utf-8")
    done = run(*args, cwd=workdir)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
