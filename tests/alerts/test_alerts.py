"""Alert lifecycle, inhibition, silences, grouping into incidents and notification rules."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from watchkeeper.alerts import AlertManager, GroupRule, InhibitRule, Notification, Rules
from watchkeeper.alerts.labels import ZERO_TIME, finding_labels, fingerprint
from watchkeeper.monitors.base import Finding, Severity

T0 = datetime(2024, 1, 1, tzinfo=UTC)
MODEL = "income"


def at(i: int) -> datetime:
    return T0 + timedelta(hours=i)


def finding(monitor: str, family: str, column: str | None = None, severity: str = "warning",
            value: float = 0.3, threshold: float = 0.1, metric: str | None = None,
            segment: str | None = None) -> Finding:
    return Finding(monitor, family, column, value, threshold, Severity(severity),
                   f"{monitor} {column or ''} {metric or ''} at {value:g}".strip(),
                   {"psi": value / 2}, metric=metric, segment=segment)


def drift(column: str, **kw) -> Finding:
    return finding("feature_drift", "drift", column, **kw)


def perf(metric: str = "accuracy", **kw) -> Finding:
    kw.setdefault("value", 0.7)
    kw.setdefault("threshold", 0.8)
    return finding("performance", "performance", metric=metric, **kw)


class Replay:
    """Feeds windows w1, w2, … one hour apart and keeps every notification."""

    def __init__(self, am: AlertManager | None = None, **kw) -> None:
        self.am = am or AlertManager(MODEL, **kw)
        self.i = 0
        self.sent: list[Notification] = []

    def step(self, *findings: Finding) -> list[str]:
        self.i += 1
        out = self.am.process(f"w{self.i}", at(self.i), list(findings))
        self.sent += out
        return [n.kind for n in out]

    def run(self, windows: int, *findings: Finding) -> list[str]:
        return [k for _ in range(windows) for k in self.step(*findings)]


def fp(monitor: str, column: str | None = None, metric: str | None = None,
       segment: str | None = None) -> str:
    return fingerprint(MODEL, monitor, column, segment, metric)


# -- lifecycle -------------------------------------------------------------------------


def test_pending_then_firing_after_for_windows():
    r = Replay()
    assert r.step(drift("AGEP")) == []
    alert = r.am.alerts[fp("feature_drift", "AGEP")]
    assert alert.state == "pending" and alert.hits == 1 and not r.am.incidents
    assert r.step(drift("AGEP")) == ["open"]
    assert alert.state == "firing" and alert.fired == "w2" and alert.first_seen == "w1"
    # a schema break is deterministic: it fires on the first window
    assert r.step(drift("AGEP"), finding("missing_column", "quality", "SCHL", "critical")) \
        == ["open"]


def test_for_needs_consecutive_windows_and_pending_alerts_are_dropped():
    r = Replay()
    for _ in range(10):
        assert r.step(drift("AGEP")) == []
        assert r.step() == []
        assert fp("feature_drift", "AGEP") not in r.am.alerts
    assert not r.am.incidents


def test_hysteresis_one_clean_window_does_not_resolve():
    r = Replay(rules=Rules(clear_for=2))
    assert r.run(2, drift("AGEP")) == ["open"]
    assert r.step() == []  # one clean window
    assert r.step(drift("AGEP")) == []  # back again: same alert, same incident
    assert r.step() == []
    alert = r.am.alerts[fp("feature_drift", "AGEP")]
    assert alert.state == "firing" and alert.clean == 1
    assert r.step() == ["resolve"]
    assert alert.state == "resolved" and alert.resolved == "w6"
    incident = next(iter(r.am.incidents.values()))
    assert incident.status == "resolved" and incident.resolved == "w6"
    payload = r.sent[-1].to_alertmanager()
    assert payload["status"] == "resolved"
    assert payload["alerts"][0]["endsAt"] == "2024-01-01T06:00:00Z"
    assert r.run(5) == []  # nothing more to say


def test_clear_for_three():
    r = Replay(rules=Rules(clear_for=3))
    r.run(2, drift("AGEP"))
    assert r.run(2) == []
    assert r.step() == ["resolve"]


def test_dedup_one_alert_per_fingerprint():
    r = Replay()
    kinds = r.run(6, drift("AGEP", value=0.2), drift("AGEP", severity="critical", value=0.5))
    assert kinds == ["open"]
    assert len(r.am.alerts) == 1 and len(r.am.incidents) == 1
    alert = r.am.alerts[fp("feature_drift", "AGEP")]
    assert alert.severity is Severity.CRITICAL and alert.value == 0.5
    assert len(alert.history) == 6
    # metric and segment are part of the fingerprint
    r.run(2, perf("accuracy"), perf("roc_auc"))
    assert {a.metric for a in r.am.alerts.values()} == {None, "accuracy", "roc_auc"}


def test_history_is_bounded():
    r = Replay()
    r.run(200, drift("AGEP"))
    assert len(r.am.alerts[fp("feature_drift", "AGEP")].history) == 48


def test_info_never_alerts():
    r = Replay()
    info = finding("missing_column", "quality", "SCHL", "info")
    assert r.run(20, info, drift("AGEP", severity="info")) == []
    assert not r.am.alerts and not r.am.incidents


def test_escalation_renotifies_value_wiggle_does_not():
    r = Replay()
    assert r.step(drift("AGEP", value=0.21)) == []
    assert r.step(drift("AGEP", value=0.22)) == ["open"]
    for v in (0.2, 0.23, 0.19, 0.25):
        assert r.step(drift("AGEP", value=v)) == []
    assert r.step(drift("AGEP", severity="critical", value=0.6)) == ["update"]
    assert r.sent[-1].severity is Severity.CRITICAL
    incident = next(iter(r.am.incidents.values()))
    assert incident.status == "updated" and incident.severity is Severity.CRITICAL
    # severity is the maximum seen while firing: falling back and rising again is no news
    assert r.step(drift("AGEP", value=0.2)) == []
    assert r.step(drift("AGEP", severity="critical", value=0.7)) == []
    assert r.am.alerts[fp("feature_drift", "AGEP")].value == 0.7


def test_repeat_every_and_acknowledge():
    r = Replay(rules=Rules(repeat_every=4))
    kinds = r.run(14, drift("AGEP"))
    assert kinds == ["open", "repeat", "repeat", "repeat"]
    assert [n.window for n in r.sent] == ["w2", "w6", "w10", "w14"]
    incident_id = r.sent[0].incident
    incident = r.am.acknowledge(incident_id, by="ana")
    assert incident.acknowledged and incident.acknowledged_by == "ana"
    # the acknowledgement itself waits in the outbox (pagers stop paging), once
    r.am.acknowledge(incident_id, by="bob")
    assert [(n.kind, n.incident, n.acknowledged_by) for n in r.am.outbox] == [
        ("acknowledge", incident_id, "ana")]
    assert AlertManager.from_dict(r.am.to_dict()).outbox[0].to_dict() == \
        r.am.outbox[0].to_dict()  # saved with the state: sent at least once
    assert [n.kind for n in r.am.take_outbox()] == ["acknowledge"] and not r.am.outbox
    assert r.run(10, drift("AGEP")) == []  # acknowledged: no more reminders
    # a material change still notifies, and so does the resolve
    oor = finding("out_of_range", "quality", "AGEP")
    assert r.step(drift("AGEP"), oor) == []
    assert r.step(drift("AGEP"), oor) == ["update"]
    assert r.sent[-1].acknowledged_by == "bob"
    assert r.run(2) == ["resolve"]
    assert r.am.incidents[incident_id].notifications == 7  # the acknowledgement too
    with pytest.raises(KeyError, match="no incident"):
        r.am.acknowledge("nope")


def test_repeat_zero_never_repeats():
    r = Replay(rules=Rules(repeat_every=0))
    assert r.run(100, drift("AGEP")) == ["open"]


def test_windows_must_come_in_time_order():
    am = AlertManager(MODEL)
    am.process("w2", at(2), [])
    with pytest.raises(ValueError, match="time order"):
        am.process("w1", at(1), [])
    with pytest.raises(ValueError, match="time order"):
        am.process("w2 again", at(2), [])
    naive = datetime(2030, 1, 1)  # naive datetimes are UTC
    am.process("later", naive, [])
    assert am.last_start == datetime(2030, 1, 1, tzinfo=UTC)


def test_bad_severity_is_a_clear_error():
    bad = finding("feature_drift", "drift", "AGEP")
    bad.severity = "loud"  # type: ignore[assignment]
    am = AlertManager(MODEL)
    with pytest.raises(ValueError, match="not one of info, warning, critical"):
        am.process("w1", at(1), [drift("AGEP"), bad])
    worse = Finding("feature_drift", "drift", "AGEP", None, 0.1,  # type: ignore[arg-type]
                    Severity.WARNING, "no value")
    with pytest.raises(ValueError, match="must be numbers"):
        am.process("w1", at(1), [worse])
    assert am.windows == 0 and not am.alerts  # nothing half-done: the window can be retried
    am.process("w1", at(1), [drift("AGEP")])
    assert am.windows == 1


# -- silences --------------------------------------------------------------------------


def test_silenced_incident_is_tracked_not_notified():
    r = Replay()
    s = r.am.silence({"column": "AGEP"}, until=at(100), created_by="ana", comment="known")
    assert r.run(5, drift("AGEP")) == []
    alert = r.am.alerts[fp("feature_drift", "AGEP")]
    assert alert.state == "firing" and alert.silenced_by == [s.id]
    (incident,) = r.am.incidents.values()
    assert incident.is_open and incident.notifications == 0
    # resolving an incident nobody was told about says nothing either
    assert r.run(3) == []
    assert incident.status == "resolved"
    # other columns are not silenced
    assert r.run(2, drift("SCHL")) == ["open"]


def test_silence_regex_and_negative_matchers():
    r = Replay()
    r.am.silence({"monitor": "=~feature_drift|out_of_range", "column": "!~SCHL|WKHP"},
                 until=at(100))
    assert r.run(2, drift("AGEP"), finding("out_of_range", "quality", "POBP")) == []
    assert r.run(2, drift("SCHL")) == ["open"]
    r2 = Replay()
    r2.am.silence({"family": "!=drift"}, until=at(100))
    assert r2.run(2, drift("AGEP"), perf()) == ["open"]
    assert [a.monitor for a in r2.sent[0].alerts] == ["feature_drift"]  # perf is silenced


def test_silence_expiry_then_notified():
    r = Replay()
    r.am.silence({"alertname": "feature_drift"}, until=at(4))
    assert r.run(3, drift("AGEP")) == []  # w1..w3 silenced
    assert r.step(drift("AGEP")) == ["open"]  # w4: expired, first time anyone hears of it
    assert not r.am.silences  # expired silences are dropped (time only moves on)
    assert r.am.alerts[fp("feature_drift", "AGEP")].silenced_by == []


def test_silence_added_after_open_mutes_changes_but_resolve_is_sent():
    r = Replay(rules=Rules(repeat_every=2))
    assert r.run(2, drift("AGEP")) == ["open"]
    s = r.am.silence({"column": "AGEP"}, until=at(100))
    assert r.am.alerts[fp("feature_drift", "AGEP")].silenced_by == [s.id]  # applied at once
    assert r.run(6, drift("AGEP", severity="critical")) == []  # no repeat, no escalation
    assert r.run(2) == ["resolve"]  # those who were told it opened hear it closed
    r2 = Replay()
    r2.run(2, drift("AGEP"))
    s2 = r2.am.silence({"column": "AGEP"}, until=at(100))
    assert r2.am.unsilence(s2.id) is s2 and not r2.am.silences
    assert r2.step(drift("AGEP", severity="critical")) == ["update"]


def test_silence_validation():
    am = AlertManager(MODEL)
    with pytest.raises(ValueError, match="unknown label 'colum'"):
        am.silence({"colum": "AGEP"}, until=at(1))
    with pytest.raises(ValueError, match="bad regex"):
        am.silence({"column": "=~(AGEP"}, until=at(1))
    with pytest.raises(ValueError, match="at least one matcher"):
        am.silence({}, until=at(1))
    with pytest.raises(KeyError):
        am.unsilence("nope")


def test_silence_with_start_time():
    r = Replay()
    r.am.silence({"column": "AGEP"}, until=at(10), starts=at(5))
    assert r.run(2, drift("AGEP")) == ["open"]
    assert r.run(2, drift("AGEP", severity="critical")) == ["update"]  # w3, w4: not yet
    assert r.am.alerts[fp("feature_drift", "AGEP")].silenced_by == []
    r.step(drift("AGEP"))
    assert r.am.alerts[fp("feature_drift", "AGEP")].silenced_by != []


# -- inhibition ------------------------------------------------------------------------


def test_schema_break_inhibits_drift_on_the_same_column():
    r = Replay()
    missing = finding("missing_column", "quality", "SCHL", "critical", value=0.4, threshold=0)
    kinds = r.run(6, missing, drift("SCHL"), finding("out_of_range", "quality", "SCHL"),
                  drift("AGEP"))
    assert kinds == ["open", "open"]  # SCHL (its schema break) and AGEP drift, separately
    schl = r.am.alerts[fp("feature_drift", "SCHL")]
    assert schl.state == "pending" and schl.hits == 0
    assert schl.inhibited_by == "column break: missing_column on SCHL"
    assert r.am.alerts[fp("out_of_range", "SCHL")].inhibited_by is not None
    assert r.am.alerts[fp("feature_drift", "AGEP")].state == "firing"
    by_title = {n.title: n for n in r.sent}
    assert set(by_title) == {"missing_column on SCHL", "feature_drift on AGEP"}
    assert len(by_title["missing_column on SCHL"].alerts) == 1


def test_inhibited_firing_alert_neither_resolves_nor_renotifies():
    r = Replay()
    assert r.run(2, drift("SCHL")) == ["open"]
    missing = finding("missing_rate", "quality", "SCHL", "critical")
    assert r.run(5, missing, drift("SCHL", severity="critical")) == ["update"]  # missing_rate
    alert = r.am.alerts[fp("feature_drift", "SCHL")]
    assert alert.state == "firing" and alert.severity is Severity.WARNING  # held, not raised
    assert alert.inhibited_by is not None
    note = r.sent[-1].to_alertmanager()
    assert {a["labels"]["alertname"] for a in note["alerts"]} == {"feature_drift",
                                                                   "missing_rate"}


def test_volume_collapse_inhibits_drift_and_performance_not_a_spike():
    r = Replay()
    collapse = finding("volume", "quality", "ts", "critical", value=120, threshold=5000)
    kinds = r.run(4, collapse, drift("AGEP"), perf(), finding("latency", "service",
                                                              metric="latency_p99"))
    assert kinds == ["open"]
    assert r.am.alerts[fp("feature_drift", "AGEP")].state == "pending"
    assert r.am.alerts[fp("performance", metric="accuracy")].state == "pending"
    assert r.sent[0].title.startswith("service")  # volume joined latency (traffic rule)
    spike = finding("volume", "quality", "ts", "warning", value=9000, threshold=6000)
    r2 = Replay()
    assert r2.run(2, spike, drift("AGEP")) == ["open", "open"]


def test_throughput_drop_inhibits_statistics():
    r = Replay()
    drop = finding("throughput", "service", value=0.5, threshold=3.0, metric="rows_per_second")
    assert r.run(3, drop, drift("AGEP"), finding("fairness", "fairness", metric="tpr_gap",
                                                 segment="SEX=2")) == ["open"]
    assert [a.monitor for a in r.sent[0].alerts] == ["throughput"]


def test_custom_inhibit_rule_and_no_inhibition():
    rules = Rules(inhibit=[InhibitRule({"family": "service"}, {"family": "drift"})])
    r = Replay(rules=rules)
    assert r.run(2, finding("error_rate", "service"), drift("AGEP")) == ["open"]
    r2 = Replay(rules=Rules(inhibit=[]))
    missing = finding("missing_column", "quality", "SCHL", "critical")
    assert r2.run(2, missing, drift("SCHL")) == ["open", "update"]


def test_missing_prediction_inhibits_what_is_computed_from_it():
    r = Replay()
    missing = finding("missing_column", "quality", "pred", "critical", value=1.0, threshold=0)
    missing.evidence["role"] = "prediction"
    outcome = [perf("accuracy", severity="critical"), perf("recall", severity="critical"),
               finding("estimated_performance", "estimated_performance", metric="f1"),
               finding("fairness", "fairness", metric="tpr_gap", segment="SEX=2")]
    assert r.run(4, missing, *outcome, drift("AGEP")) == ["open", "open"]
    assert {n.title for n in r.sent} == {"missing_column on pred", "feature_drift on AGEP"}
    for f in outcome:
        alert = r.am.alerts[fp(f.monitor, metric=f.metric, segment=f.segment)]
        assert alert.state == "pending"
        assert alert.inhibited_by == "model output missing: missing_column on pred"
    # a missing feature column does not silence the model's performance
    feature = finding("missing_column", "quality", "AGEP", "critical", value=1.0, threshold=0)
    feature.evidence["role"] = "feature"
    r2 = Replay()
    r2.run(2, feature, perf())
    assert r2.am.alerts[fp("performance", metric="accuracy")].state == "firing"


def test_inhibition_of_many_findings_is_right_and_indexed():
    rules = Rules()
    n = 50_000
    labels = [finding_labels(MODEL, drift(f"c{i}")) for i in range(n)]
    labels += [finding_labels(MODEL, finding("missing_column", "quality", f"c{i}", "critical"))
               for i in range(0, n, 7)]
    found = rules.inhibited(labels)
    assert set(found) == set(range(0, n, 7))
    assert found[7] == "column break: missing_column on c7"
    # the same answer as comparing every pair, on a sample small enough for that
    sample = labels[:300] + labels[n:n + 40]
    slow = {i: rule.name for i, t in enumerate(sample)
            if (rule := next((r for r in rules.inhibit
                              if any(r.inhibits(s, t) for s in sample)), None))}
    assert len(slow) == 40
    assert {i: v.split(":")[0] for i, v in rules.inhibited(sample).items()} == slow


# -- grouping --------------------------------------------------------------------------


def test_indexed_grouping_matches_comparing_every_pair():
    from watchkeeper.alerts import Alert, Incident
    from watchkeeper.alerts.incidents import group

    rng = random.Random(3)
    kinds = [("feature_drift", "drift"), ("missing_column", "quality"),
             ("performance", "performance"), ("fairness", "fairness"),
             ("latency", "service"), ("volume", "quality"), ("near_duplicates", "security"),
             ("ood_share", "security"), ("unseen_category", "quality")]

    def alert(k: int, window: str) -> Alert:
        monitor, family = rng.choice(kinds)
        f = Finding(monitor, family, rng.choice(["A", "B", "C", None]), 1.0, 0.5,
                    Severity.WARNING, "m", segment=rng.choice([None, "client=x", "SEX=2"]),
                    metric=str(k))
        a = Alert.start(MODEL, f, window, at(0))
        a.state, a.fired, a.fired_at = "firing", window, at(0 if window == "old" else 1)
        return a

    rules = Rules()
    for _ in range(30):
        incidents = []
        for i in range(rng.randrange(3)):
            inc = Incident(f"i{i}", MODEL, "old", at(0))
            for k in range(rng.randrange(1, 4)):
                inc.add(alert(100 * i + k, "old"))
            incidents.append(inc)
        new = [alert(1000 + k, "now") for k in range(rng.randrange(1, 12))]
        # the oracle: every pair compared
        m, parent = len(incidents), list(range(len(incidents) + len(new)))

        def find(i: int, parent: list[int] = parent) -> int:
            while parent[i] != i:
                i = parent[i]
            return i

        for j, a in enumerate(new):
            for i, inc in enumerate(incidents):
                if any(rules.related(a.labels, b.labels, False) for b in inc.firing):
                    ri, rj = find(i), find(m + j)
                    parent[max(ri, rj)] = min(ri, rj)
            for k in range(j):
                if rules.related(a.labels, new[k].labels, True):
                    ri, rj = find(m + k), find(m + j)
                    parent[max(ri, rj)] = min(ri, rj)
        expected = {}
        for j, a in enumerate(new):
            expected.setdefault(find(m + j), []).append(a.fingerprint)
        got = {(inc.id if inc else None, tuple(a.fingerprint for a in members))
               for inc, members in group(new, incidents, rules)}
        want = {(incidents[r].id if r < m else None, tuple(fps)) for r, fps in expected.items()}
        assert got == want


def test_same_column_is_one_incident():
    r = Replay()
    schl = [drift("SCHL"), finding("out_of_range", "quality", "SCHL"),
            finding("unseen_category", "quality", "SCHL")]
    assert r.run(3, *schl) == ["open"]
    (incident,) = r.am.incidents.values()
    assert incident.title == "SCHL: feature_drift, out_of_range, unseen_category"
    assert len(r.sent[0].to_alertmanager()["alerts"]) == 3
    # missing values on SCHL join the incident; the drift they cause is inhibited from now
    missing = finding("missing_rate", "quality", "SCHL", "critical")
    assert r.step(missing, *schl) == []  # missing_rate is pending (two windows)
    assert r.step(missing, *schl) == ["update"]
    assert set(incident.alerts) == {fp(f.monitor, "SCHL") for f in [missing, *schl]}
    assert incident.alerts[fp("feature_drift", "SCHL")].inhibited_by is not None
    # without inhibition, missing values and drift on one column open one incident
    r2 = Replay(rules=Rules(inhibit=[]))
    assert r2.run(2, missing, drift("SCHL")) == ["open"]
    assert len(r2.sent[0].alerts) == 2


def test_alert_joining_later_is_a_material_change():
    r = Replay()
    oor = finding("out_of_range", "quality", "SCHL")
    assert r.run(2, oor) == ["open"]
    assert r.step(oor, finding("unseen_category", "quality", "SCHL")) == []
    assert r.step(oor, finding("unseen_category", "quality", "SCHL")) == ["update"]
    assert len(r.am.incidents) == 1
    assert r.sent[-1].number == 2


def test_drift_with_performance_is_one_model_degradation_incident():
    r = Replay()
    assert r.run(2, drift("AGEP"), drift("SCHL"), perf("accuracy"), perf("roc_auc"),
                 finding("estimated_performance", "estimated_performance",
                         metric="accuracy")) == ["open"]
    (incident,) = r.am.incidents.values()
    assert incident.title.startswith("model degradation")
    assert len(incident.alerts) == 5


def test_unrelated_columns_are_separate_incidents():
    r = Replay()
    assert r.run(2, drift("AGEP"), finding("missing_rate", "quality", "WKHP")) == ["open"] * 2
    assert len(r.am.incidents) == 2


def test_columns_that_start_drifting_in_one_window_are_one_incident():
    r = Replay()
    columns = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP"]
    assert r.run(2, *(drift(c) for c in columns)) == ["open"]
    (incident,) = r.am.incidents.values()
    assert incident.title == "6 columns drifted together from window w1"
    assert len(incident.alerts) == 6
    # a column that starts drifting later is a change of its own
    assert r.step(*(drift(c) for c in columns), drift("WKHP")) == []
    assert r.step(*(drift(c) for c in columns), drift("WKHP")) == ["open"]
    assert len(r.am.incidents) == 2


def test_performance_joins_the_oldest_related_incident_later():
    r = Replay()
    r.run(2, drift("AGEP"))
    r.step(drift("AGEP"), perf())
    assert r.step(drift("AGEP"), perf()) == ["update"]
    assert len(r.am.incidents) == 1
    # a drift on another column now relates to the performance alert and joins too
    r.step(drift("AGEP"), perf(), drift("SCHL"))
    assert r.step(drift("AGEP"), perf(), drift("SCHL")) == ["update"]
    assert len(r.am.incidents) == 1


def test_service_alerts_are_one_incident():
    r = Replay()
    kinds = r.run(2, finding("latency", "service", metric="latency_p99"),
                  finding("throughput", "service", metric="rows_per_second", value=50,
                          threshold=10), finding("error_rate", "service"))
    assert kinds == ["open"]
    assert next(iter(r.am.incidents.values())).title.startswith("service")


def test_security_groups_by_segment():
    r = Replay()
    a = finding("auth_failures", "security", segment="client=1.2.3.4")
    b = finding("request_rate", "security", segment="client=1.2.3.4")
    c = finding("request_rate", "security", segment="client=5.6.7.8")
    assert r.run(2, a, b, c) == ["open", "open"]
    titles = sorted(i.title for i in r.am.incidents.values())
    assert titles == ["request_rate on client=5.6.7.8",
                      "security on client=1.2.3.4: auth_failures, request_rate"]


def test_resolved_alert_does_not_pull_new_ones_in():
    r = Replay()
    r.run(2, drift("AGEP"), finding("missing_rate", "quality", "WKHP"))  # 2 incidents
    assert r.run(2, finding("missing_rate", "quality", "WKHP")) == ["resolve"]  # AGEP drift
    assert r.run(2, perf(), finding("missing_rate", "quality", "WKHP")) == ["open"]
    assert len(r.am.incidents) == 3


def test_group_rules_configurable():
    rules = Rules(group=[GroupRule("all", {})])
    r = Replay(rules=rules)
    assert r.run(2, drift("AGEP"), finding("missing_rate", "quality", "WKHP")) == ["open"]
    r2 = Replay(rules=Rules(group=[]))
    assert r2.run(3, drift("AGEP"), finding("out_of_range", "quality", "AGEP")) \
        == ["open", "open"]


# -- payload ---------------------------------------------------------------------------


def test_alertmanager_payload_shape():
    r = Replay(external_url="https://wk.example.com")
    r.run(2, drift("AGEP", severity="critical"), perf())
    payload = r.sent[0].to_alertmanager()
    assert set(payload) == {"version", "groupKey", "truncatedAlerts", "status", "receiver",
                            "groupLabels", "commonLabels", "commonAnnotations",
                            "externalURL", "alerts"}
    assert payload["version"] == "4" and payload["status"] == "firing"
    assert payload["receiver"] == "watchkeeper"
    assert payload["groupLabels"] == {"incident": r.sent[0].incident, "model": MODEL}
    assert payload["commonLabels"] == {"model": MODEL, "incident": r.sent[0].incident}
    assert payload["externalURL"] == "https://wk.example.com"
    (d,) = [a for a in payload["alerts"] if a["labels"]["alertname"] == "feature_drift"]
    assert d["labels"] == {"alertname": "feature_drift", "model": MODEL, "family": "drift",
                           "severity": "critical", "incident": r.sent[0].incident,
                           "column": "AGEP"}
    assert set(d["annotations"]) >= {"summary", "description"}
    assert d["startsAt"] == "2024-01-01T02:00:00Z" and d["endsAt"] == ZERO_TIME
    assert d["fingerprint"] == fp("feature_drift", "AGEP") and len(d["fingerprint"]) == 16
    assert d["generatorURL"].endswith(f"/incidents/{r.sent[0].incident}")
    (p,) = [a for a in payload["alerts"] if a["labels"]["alertname"] == "performance"]
    assert p["labels"]["metric"] == "accuracy" and "column" not in p["labels"]
    json.dumps(payload, allow_nan=False)
    assert r.sent[0].subject.startswith("[FIRING] income: model degradation")
    assert "incident" in r.sent[0].text()


def test_notifications_round_trip():
    r = Replay()
    r.run(2, drift("AGEP"))
    n = r.sent[0]
    again = Notification.from_dict(json.loads(json.dumps(n.to_dict())))
    assert again.to_alertmanager() == n.to_alertmanager()


# -- long replay -----------------------------------------------------------------------


def flapping_stream(windows: int = 600, seed: int = 7) -> list[list[Finding]]:
    """Three real episodes whose findings flap (single-window gaps), plus isolated noise
    findings that never repeat in consecutive windows, and info findings throughout."""
    rng = random.Random(seed)
    gapped = False
    episodes = [
        (50, 120, [drift("AGEP"), perf("accuracy")]),
        (200, 260, [finding("missing_rate", "quality", "SCHL"), drift("SCHL")]),
        (400, 470, [finding("latency", "service", metric="latency_p99"),
                    finding("error_rate", "service")]),
    ]
    noise_pool = [drift("WKHP"), drift("POBP"), perf("roc_auc"),
                  finding("fairness", "fairness", metric="tpr_gap", segment="SEX=2"),
                  finding("unseen_category", "quality", "OCCP")]
    last_noise: dict[int, int] = {}
    stream: list[list[Finding]] = []
    for w in range(windows):
        found = [finding("new_column", "quality", "x", "info")]
        for lo, hi, items in episodes:
            if lo <= w < hi:
                gap = rng.random() < 0.3 and not gapped and w not in (lo, lo + 1)
                gapped = gap
                for f in items:
                    if not gap:
                        sev = "critical" if rng.random() < 0.2 else "warning"
                        found.append(drift(f.column, severity=sev, value=rng.uniform(0.2, 0.4))
                                     if f.monitor == "feature_drift" else f)
        for k, f in enumerate(noise_pool):
            if rng.random() < 0.08 and last_noise.get(k, -9) < w - 1:
                last_noise[k] = w
                found.append(f)
        stream.append(found)
    return stream


@pytest.mark.parametrize("repeat_every", [0, 12])
def test_long_flapping_replay_notifies_each_incident_once(repeat_every):
    stream = flapping_stream()
    r = Replay(rules=Rules(repeat_every=repeat_every))
    for found in stream:
        r.step(*found)
    per_incident = Counter((n.incident, n.kind) for n in r.sent)
    assert len(r.am.incidents) == 3  # noise and flapping open nothing extra
    for incident in r.am.incidents.values():
        assert per_incident[(incident.id, "open")] == 1
        assert per_incident[(incident.id, "resolve")] == 1
        assert incident.status == "resolved"
    # escalations to critical may re-notify once per incident, reminders every 12 windows
    updates = sum(n.kind == "update" for n in r.sent)
    assert updates <= 3
    repeats = sum(n.kind == "repeat" for n in r.sent)
    assert repeats == (0 if repeat_every == 0 else pytest.approx(200 / 12, abs=4))


def test_round_trip_mid_stream_resumes_identically():
    stream = flapping_stream(300, seed=3)
    whole = Replay()
    for i, found in enumerate(stream):
        whole.step(*found)
        if i == 80:
            whole.am.silence({"column": "=~W.*"}, until=at(250), created_by="ana")
            whole.am.acknowledge(next(iter(whole.am.incidents)), by="bo")
    first = Replay()
    for i, found in enumerate(stream[:150]):
        first.step(*found)
        if i == 80:
            first.am.silence({"column": "=~W.*"}, until=at(250), created_by="ana")
            first.am.acknowledge(next(iter(first.am.incidents)), by="bo")
    state = json.loads(json.dumps(first.am.to_dict(), allow_nan=False))
    resumed = Replay(AlertManager.from_dict(state))
    resumed.i = first.i
    assert resumed.am.to_dict() == first.am.to_dict()
    for found in stream[150:]:
        resumed.step(*found)
    assert [n.to_dict() for n in first.sent + resumed.sent] == [n.to_dict() for n in whole.sent]
    assert resumed.am.to_dict() == whole.am.to_dict()
    # shared alert objects survive the round trip: an incident sees its live alerts
    for incident in resumed.am.incidents.values():
        for a in incident.alerts.values():
            live = resumed.am.alerts.get(a.fingerprint)
            if live is not None and live.incident == incident.id:
                assert live is a


def test_resolved_incidents_are_pruned():
    r = Replay(keep_resolved=2)
    for col in ("A", "B", "C", "D"):
        r.run(2, drift(col))
        r.run(2)
    assert len(r.am.incidents) == 2
    assert {a.column for a in r.am.alerts.values()} == {"C", "D"}


# -- rules -----------------------------------------------------------------------------


def test_rules_round_trip_and_defaults():
    rules = Rules()
    assert rules.for_window("missing_column", "quality") == 1
    assert rules.for_window("missing_rate", "quality") == 2
    assert rules.for_window("latency", "service") == 1
    assert rules.for_window("fairness", "fairness") == 2
    assert rules.for_window("something_new", "elsewhere") == 2
    again = Rules.from_dict(json.loads(json.dumps(rules.to_dict())))
    assert again == rules
    partial = Rules.from_dict({"for_windows": {"drift": 4}, "clear_for": 3, "inhibit": []})
    assert partial.for_window("feature_drift", "drift") == 4
    assert partial.for_window("type_change", "quality") == 1
    assert partial.clear_for == 3 and partial.inhibit == [] and partial.group == Rules().group
    assert Rules.from_dict(None) == Rules()


@pytest.mark.parametrize("bad, match", [
    ({"clear_for": 0}, "clear_for"),
    ({"repeat_every": -1}, "repeat_every"),
    ({"for_windows": {"drift": 0}}, "drift"),
    ({"inhibit": [{"source": {"monitor": "=~("}, "target": {}}]}, "bad regex"),
    ({"group": [{"name": "g", "left": {}, "equal": ["client"]}]}, "unknown label"),
    ({"repeat": 3}, "unknown key"),
])
def test_rules_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        Rules.from_dict(bad)
