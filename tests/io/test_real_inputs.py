"""Issue 12, the first real file: blank cells, headerless and oddly delimited CSV files,
personal-data guesses confirmed by values, codes with thousands of levels, mistyped names."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import watchkeeper as wk
from tests.helpers import ADULT
from watchkeeper.baseline.binning import selection_drift
from watchkeeper.baseline.schema import Kind, infer_schema
from watchkeeper.errors import DataError, SuiteError
from watchkeeper.io.delimited import CsvLayout, csv_blocks, read_csv
from watchkeeper.io.pii import assess, looks_like, personal_values, value_kind
from watchkeeper.io.tables import to_table
from watchkeeper.io.values import category_counts

ADULT_NAMES = ("age,workclass,fnlwgt,education,education-num,marital-status,occupation,"
               "relationship,race,sex,capital-gain,capital-loss,hours-per-week,"
               "native-country,income")
WATCHKEEPER = Path(sys.executable).with_name("watchkeeper")


def _customers(n: int, seed: int, blank_share: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    city = rng.choice(["Leeds", "York", "Hull", "Bath"], size=n).astype(object)
    city[rng.random(n) < blank_share] = ""
    return pd.DataFrame({"income": rng.normal(30_000, 5_000, n).round(2), "city": city,
                         "score": rng.random(n).round(4)})


# -- 1. blank cells are missing values, in every reader ------------------------------------
def _export_by_hand(frame: pd.DataFrame, path: Path) -> None:
    """What a spreadsheet export looks like: blank text cells, some with a stray space."""
    lines = [",".join(frame.columns)]
    for i, row in enumerate(frame.itertuples(index=False)):
        city = row.city if row.city else ("" if i % 2 else " ")
        lines.append(f"{row.income},{city},{row.score}")
    path.write_text("\n".join(lines) + "\n")


def test_a_missing_value_spike_in_a_hand_exported_csv_is_missing_not_a_category(tmp_path):
    _export_by_hand(_customers(4_000, 1), tmp_path / "reference.csv")
    _export_by_hand(_customers(4_000, 2, blank_share=0.15), tmp_path / "current.csv")
    suite = wk.init(tmp_path / "reference.csv", progress=False)
    found = {(f.monitor, f.column) for f in suite.check(tmp_path / "current.csv").alerts()}
    assert ("missing_rate", "city") in found
    assert ("unseen_category", "city") not in found
    assert "" not in (suite.schema["city"].categories or [])


@pytest.mark.parametrize("convert", [
    pytest.param(lambda f: f, id="pandas"),
    pytest.param(lambda f: pa.Table.from_pandas(f), id="arrow"),
    pytest.param(lambda f: pa.Table.from_pandas(f.astype({"city": "category"})),
                 id="arrow-dictionary"),
    pytest.param(lambda f: f.to_dict("records"), id="rows"),
    pytest.param(lambda f: __import__("polars").from_pandas(f), id="polars"),
])
def test_blank_text_and_na_spellings_are_missing_in_every_input(convert):
    frame = pd.DataFrame({"city": ["Leeds", "", "  ", "NA", "?", None, "York"]})
    counts, missing = category_counts(to_table(convert(frame)).column("city"))
    assert dict(counts) == {"Leeds": 1, "York": 1} and missing == 5


def test_an_all_blank_column_and_a_partly_blank_one_follow_the_same_rule(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,\n2,x\n3,\n")
    table = to_table(path)
    assert table.column("a").to_pylist() == [1, 2, 3]
    assert table.column("b").to_pylist() == [None, "x", None]
    path.write_text("a,b\n1,\n2,\n")
    assert to_table(path).column("b").null_count == 2


def test_ndjson_blank_strings_are_missing(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": "x"}\n{"a": ""}\n{"a": "null"}\n')
    assert to_table(path).column("a").to_pylist() == ["x", None, None]


# -- 4. headerless, semicolon- and space-separated CSV files ----------------------------
def test_a_headerless_csv_is_refused_with_its_first_row_and_what_to_do(tmp_path):
    path = tmp_path / "credit.csv"
    path.write_text("39, yes, 1200.5\n41, no, 300.0\n27, yes, 50.25\n")
    with pytest.raises(DataError, match=r"no header row.*\(39, yes, 1200\.5, …\).*names="):
        to_table(path)
    reading = read_csv(path, layout=CsvLayout(names=("age", "owner", "credit")))
    assert reading.table.column_names == ["age", "owner", "credit"]
    assert reading.table.column("owner").to_pylist() == ["yes", "no", "yes"]  # no space
    assert reading.table.column("credit").type == pa.float64()


@pytest.mark.parametrize("delimiter,said", [(";", "';'"), (" ", "space"), ("\t", "tab"),
                                            ("|", "'|'")])
def test_the_delimiter_is_guessed_and_said(tmp_path, delimiter, said):
    path = tmp_path / "credit.csv"
    rows = [["credit", "city", "score"], ["1,5", "Leeds", "3"], ["2,0", "York", "4"]]
    path.write_text("\n".join(delimiter.join(r) for r in rows) + "\n")
    reading = read_csv(path)
    assert reading.table.column_names == ["credit", "city", "score"]
    assert any(f"delimiter guessed: {said}" in n for n in reading.notes)
    assert wk.init(path, progress=False).schema["credit"]  # "no column named 'credit'" before


def test_spaces_around_header_names_are_stripped_and_said(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("age, city , score\n1,a,2\n3,b,4\n")
    reading = read_csv(path)
    assert reading.table.column_names == ["age", "city", "score"]
    assert any("stripped spaces around 2 column name(s)" in n for n in reading.notes)


def test_uci_adult_reads_as_published(tmp_path):
    names = tuple(ADULT_NAMES.split(","))
    reading = read_csv(ADULT / "adult.test", layout=CsvLayout(names_if_headerless=names))
    table = reading.table
    assert table.num_rows == 16_281 and table.column_names == list(names)
    assert any("skipped 1 line(s) above the data: '|1x3 Cross validator'" in n
               for n in reading.notes)
    assert table.column("age").type == pa.int64()
    workclass = table.column("workclass").to_pylist()
    assert "?" not in workclass and " Private" not in workclass and None in workclass


@pytest.mark.slow
def test_cli_inits_on_adult_data_and_checks_adult_test(tmp_path):
    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(WATCHKEEPER), *map(str, args)], cwd=tmp_path, text=True,
                              capture_output=True, timeout=120, stdin=subprocess.DEVNULL)

    refused = run("init", ADULT / "adult.data", "--no-progress")
    assert refused.returncode == 2 and "no header row" in refused.stderr
    made = run("init", ADULT / "adult.data", "--names", ADULT_NAMES, "--target", "income",
               "--no-progress")
    assert made.returncode == 0, made.stderr
    assert "no header row: columns named as given" in made.stdout
    checked = run("check", ADULT / "adult.test", "--window-rows", "8000", "--no-progress")
    assert checked.returncode == 0, checked.stderr
    assert "its 15 columns are named as in the suite" in checked.stderr
    drifted = {line.split()[4] for line in checked.stdout.splitlines()
               if "feature_drift" in line}
    assert not drifted, checked.stdout  # the test split is the same population
    assert "unseen_category  income" in checked.stdout  # its labels end with '.'


# -- 5. personal data: names confirmed by values, overridable ----------------------------
def _contacts(n: int = 300) -> pa.Table:
    rng = np.random.default_rng(3)
    return pa.table({"telephone": rng.choice(["yes", "no"], n),
                     "phone": [f"+44 20 7946 {i:04d}" for i in range(n)],
                     "contact": [f"person{i}@mail.example" for i in range(n)],
                     "x": rng.normal(size=n)})


def test_a_telephone_column_of_yes_no_flags_is_monitored_not_hashed():
    schema = infer_schema(_contacts())
    assert schema.pii == {"phone": "hash", "contact": "hash"}
    assert schema["telephone"].kind == Kind.CATEGORICAL
    assert "named like phone numbers, but its values are not" in schema["telephone"].note
    assert "named like phone numbers and its values look like them" in schema["phone"].note


def test_pii_guesses_are_overridden_in_the_python_api():
    suite = wk.init(_contacts(), pii=["telephone"], not_pii=["phone"], progress=False)
    assert suite.schema.pii == {"telephone": "hash", "contact": "hash"}
    assert suite.schema["phone"].kind != Kind.TEXT or suite.schema["phone"].pii is None
    with pytest.raises(SuiteError, match="did you mean 'telephone'"):
        infer_schema(_contacts(), not_pii=["telephon"])


def test_value_pattern_helpers():
    assert value_kind(["10.0.0.1", "192.168.1.20", "8.8.8.8"]) == "IP addresses"
    assert value_kind(["yes", "no"] * 5) is None
    assert looks_like("card or account numbers", ["4111 1111 1111 1111"] * 5)
    assert not looks_like("phone numbers", ["2024-01-05", "2024-02-05"])
    assert not looks_like("person names", ["Gold", "Silver"] * 10)  # a category, not names


@pytest.mark.parametrize("values", [
    [f"+44 20 7946 {i:04d}" for i in range(6)], ["(555) 123-4567"] * 6,
    ["4111 1111 1111 1111"] * 6, ["4111 1111 1111 1112"] * 6,  # the second fails Luhn
    [str(1_700_000_000_000 + 7919 * i) for i in range(6)],  # epoch ms, not cards or phones
    ["10:30:00", "11:45:00", "12:00:00", "09:15:30", "08:00:00"],  # times, not IPv6
    ["10.0.0.1", "192.168.1.20", "8.8.8.8"], ["2001:db8::1", "fe80::1", "::1"],
    [f"p{i}@mail.example" for i in range(6)], ["yes", "no"] * 5, ["2024-01-05"] * 6])
def test_init_and_ingest_take_the_same_values_for_personal_data(values):
    """One set of value patterns: what init takes for personal data by values alone is what
    the ingest scrub finds in a column the suite does not know."""
    assert (value_kind(values) is None) == (personal_values(pa.array(values)) is None)


def test_a_column_named_like_phone_numbers_is_confirmed_by_bare_digits_too():
    """Digits without the marks the shared pattern needs confirm a name, never stand alone
    (at ingest and by values alone they are ids as often as phones)."""
    bare = [f"0770090{i:04d}" for i in range(20)]
    assert assess("mobile", bare).personal
    assert assess("mobile", [int(v) for v in bare]).personal  # phones read as numbers
    assert assess("customer", bare) is None and personal_values(pa.array(bare)) is None


def test_init_prints_pii_guesses_with_the_reason_and_the_override(tmp_path):
    _contacts().to_pandas().to_csv(tmp_path / "ref.csv", index=False)
    made = subprocess.run([str(WATCHKEEPER), "init", "ref.csv", "--no-progress",
                           "--not-pii", "contact"], cwd=tmp_path, text=True,
                          capture_output=True, timeout=120)
    assert made.returncode == 0, made.stderr
    out = made.stdout
    assert "telephone: not personal data: named like phone numbers, but its values are " \
           "not; monitored (personal? --pii telephone)" in out
    assert "phone: personal data (named like phone numbers and its values look like " \
           "them)" in out
    assert "--not-pii phone" in out and "not personal data: given; monitored" in out


# -- 13. codes with thousands of levels; mistyped column names ---------------------------
def _codes(n: int, seed: int, boost: float = 1.0) -> pa.Table:
    """A code with 4,000 levels: 30 frequent ones hold 15% of rows, 3,970 rare ones 85%.
    ``boost`` multiplies the weight of the 10 most frequent."""
    rng = np.random.default_rng(seed)
    weights = np.r_[np.full(30, 0.005), np.full(3_970, 0.85 / 3_970)]
    weights[:10] *= boost
    codes = rng.choice(4_000, size=n, p=weights / weights.sum())
    return pa.table({"code": [f"C{c:04d}" for c in codes], "x": rng.normal(size=n)})


@pytest.mark.slow
def test_a_code_with_thousands_of_levels_alerts_only_when_its_top_levels_shift():
    # before: the 100 most frequent reference levels, 70 of them rare levels frequent by
    # chance; their share fell back in every window and drift fired in 6 windows of 6
    suite = wk.init(_codes(20_000, 1), progress=False)
    code = suite.schema["code"]
    assert code.truncated and len(code.categories or []) == 30
    assert re.fullmatch(r"3\d{3} levels: monitored on the 30 most frequent \(seen at least "
                        r"30 times\), the other 3\d{3} \(85% of rows\) as one share",
                        code.note or "")
    clean = pa.concat_tables([_codes(10_000, seed) for seed in range(10, 16)])
    assert suite.check(clean, window_rows=10_000).alerts() == []
    shifted = suite.check(_codes(10_000, 5, boost=2.0), window_rows=10_000)
    assert {(f.monitor, f.column) for f in shifted.alerts()} == {("feature_drift", "code")}


def test_a_code_with_only_rare_levels_is_left_out_with_a_note():
    rng = np.random.default_rng(0)
    table = pa.table({"code": [f"C{c}" for c in rng.integers(0, 4_000, 20_000)],
                      "x": rng.normal(size=20_000)})
    code = infer_schema(table)["code"]
    assert code.kind == Kind.TEXT and code.categories is None
    assert "none frequent enough in the reference to tell from chance" in (code.note or "")


@pytest.mark.parametrize("option", ["target", "prediction", "proba", "id", "timestamp",
                                    "client", "sensitive", "ignore", "pii", "not_pii"])
def test_every_column_option_says_did_you_mean(option):
    table = pa.table({"income": [1, 2, 3] * 10, "age": [1.5, 2.5, 3.5] * 10})
    with pytest.raises(SuiteError, match=r"no column named 'incme'.*did you mean 'income'"):
        infer_schema(table, **{option: "incme"})


def test_window_by_and_labels_say_did_you_mean():
    table = pa.table({"batch": [1, 2] * 100, "x": np.arange(200.0)})
    suite = wk.init(table, progress=False, ignore="batch")
    with pytest.raises(DataError, match="did you mean 'batch'"):
        suite.check(table, window_by="btach")


def test_a_one_column_table_named_like_a_delimited_header_says_so():
    table = pa.table({"credit;age": ["1;2", "3;4"] * 10})
    with pytest.raises(SuiteError, match=r"one column, 'credit;age'.*delimiter="):
        infer_schema(table, target="credit")


def test_the_layout_can_be_given(tmp_path):
    path = tmp_path / "scores.txt.csv"
    path.write_text("1.5|a\n2.5|b\n3.5|a\n")
    reading = read_csv(path, layout=CsvLayout(delimiter="|", header=False))
    assert reading.table.column_names == ["column_1", "column_2"]
    assert reading.table.column("column_1").to_pylist() == [1.5, 2.5, 3.5]
    with pytest.raises(DataError, match="3 column names given, the file has 2 columns"):
        read_csv(path, layout=CsvLayout(names=("a", "b", "c")))


BLANK_ABOVE = {
    "title, blank line, header": "Sales export 2024-03\n\nid,amount,region\n",
    "blank lines, header": "\n\nid,amount,region\n",
    "title, blank lines with CRLF, header": "Sales export\r\n\r\n\r\nid,amount,region\r\n",
    "two titles around a blank line": "Sales\n\nexport 2024\nid,amount,region\n",
    "three titles with commas": "Sales, by region\nexport, 2024-03\nby, hand\n"
                                "id,amount,region\n",
}


@pytest.mark.parametrize("top", BLANK_ABOVE.values(), ids=list(BLANK_ABOVE))
def test_blank_lines_above_the_header_do_not_make_it_a_row(tmp_path, top):
    """A hand export with a title and blank lines above the header: Arrow counts blank
    lines among the lines it skips, so they are counted here too (the header was read as
    a row of data, every column text)."""
    path = tmp_path / "export.csv"
    path.write_bytes((top + "1,2.5,north\n2,3.5,south\n\n3,4.5,east\n").encode())
    for read in (lambda: read_csv(path).table, lambda: to_table(path),
                 lambda: pa.concat_tables(b.table for b in csv_blocks(path)[0])):
        table = read()
        assert table.to_pydict() == {"id": [1, 2, 3], "amount": [2.5, 3.5, 4.5],
                                     "region": ["north", "south", "east"]}
    header_only = tmp_path / "header_only.csv"  # no more rows of data than lines above
    header_only.write_text(top)
    assert read_csv(header_only).table.column_names == ["id", "amount", "region"]
    assert read_csv(header_only).table.num_rows == 0


def test_rows_logged_online_follow_the_same_rule():
    from watchkeeper.profiles.core import profile

    schema = infer_schema(pa.table({"city": ["Leeds", "York"] * 50}))
    window = profile([{"city": ""}, {"city": " "}, {"city": "Leeds"}], schema)
    assert window.columns["city"].missing == 2


def test_the_top_of_many_similar_levels_is_not_kept_as_if_it_were_frequent():
    rng = np.random.default_rng(4)
    even, odd = ({f"C{c}": n for c, n in enumerate(rng.poisson(40, 4_000))} for _ in "ab")
    assert selection_drift(even, odd, 100) > 0.02  # chosen by chance: they fall back
    head = {f"H{c}": 2_000 for c in range(30)}
    assert selection_drift({**head, **even}, {**head, **odd}, 30) < 0.01


def test_names_replace_a_header_row_and_name_a_headerless_file(tmp_path):
    with_header, without = tmp_path / "a.csv", tmp_path / "b.csv"
    with_header.write_text("x,y\n1,2\n3,4\n")
    without.write_text("1,2\n3,4\n")
    for path in (with_header, without):
        table = read_csv(path, layout=CsvLayout(names=("p", "q"))).table
        assert table.to_pydict() == {"p": [1, 3], "q": [2, 4]}, path.name


def test_a_blank_personal_value_stays_missing_when_hashed():
    from watchkeeper.io.pii import protect

    table = protect(pa.table({"email": ["a@b.org", "", None]}), {"email": "hash"}, b"key")
    assert table.column("email").null_count == 2


@pytest.mark.slow
def test_blank_cells_posted_to_the_server_are_missing_values(tmp_path):
    import json

    from tests.server_helpers import READ, Server, post, request, wait_for

    wk.init(_customers(3_000, 1), progress=False).save(tmp_path / "suite.yaml")
    server = Server(tmp_path, "--store", f"sqlite:///{tmp_path / 'wk.db'}", "--suite",
                    f"m={tmp_path / 'suite.yaml'}", "--window", "1s", "--grace", "1s").start()
    try:
        rows = _customers(2_000, 2, blank_share=0.2).to_dict("records")
        assert post(server, "/v1/models/m/events", json.dumps(rows).encode())[0] == 200

        def city_findings() -> set[str]:
            found = request(server.url + "/v1/models/m/findings", token=READ)[1]["findings"]
            return {f["monitor"] for f in found if f.get("column") == "city"}

        found = wait_for(lambda: city_findings() or None, timeout=60)
    finally:
        server.stop()
    assert "missing_rate" in found and "unseen_category" not in found


def test_a_column_named_like_personal_data_with_too_few_values_stays_personal():
    emails = [None] * 2_000 + [f"p{i}@mail.example" for i in range(50)]
    schema = infer_schema(pa.table({"email": emails, "x": np.arange(2_050.0)}))
    assert schema.pii == {"email": "hash"}  # values found past the first rows
    few = infer_schema(pa.table({"email": ["a", None, None], "x": [1.0, 2.0, 3.0]}))
    assert few.pii == {"email": "hash"}
