"""Personal data: found at ``init``, hashed (HMAC-SHA256) or dropped before anything is
stored or shown.

A column whose name or values look like personal data (e-mail addresses, phone numbers,
names, addresses, national ids) is marked ``pii: hash`` in the suite and treated as text,
so no value of it is ever kept in a profile or the suite file. Before events are stored,
``protect`` replaces its values with a keyed hash (the key comes from the environment,
never from the suite), or removes the column when the suite says ``pii: drop`` or no key
is configured.
"""

from __future__ import annotations

import functools
import hmac
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from watchkeeper.io.missing import missing_as_null

KEY_ENV = "WATCHKEEPER_PII_KEY"
MODES = ("hash", "drop")

#: Names that suggest personal data (values confirm them: see _PATTERNS, _NAMED_VALUE).
_NAMED: dict[str, re.Pattern[str]] = {
    "e-mail addresses": re.compile(r"e_?mail"),
    "phone numbers": re.compile(r"phone|mobile|tel|telephone|fax"),
    "card or account numbers": re.compile(r"iban|credit_?card|card_?number|account_?number"),
    "IP addresses": re.compile(r"ip|ip_?address"),
    "national ids": re.compile(r"ssn|social_security|passport|national_?id"),
    "postal codes": re.compile(r"postcode|zip|zip_?code|postal_?code"),
    "person names": re.compile(r"first_?name|last_?name|surname|full_?name|name"),
    "addresses": re.compile(r"address|street"),
}
#: Every kind of personal data recognised by its name and its values.
KINDS = tuple(_NAMED)
#: Values that are personal data wherever they appear, one pattern per kind for ``init``'s
#: guesses and the ingest scrub alike (RE2 syntax Python's re reads the same; matched by
#: Arrow at ingest): e-mail addresses, phone numbers, card numbers (Luhn-checked after, see
#: :func:`luhn`) and IP addresses.
_PATTERNS = {
    "e-mail": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "phone": r"\+\d[\d\s().-]{6,18}\d|\(?0?\d{2,5}\)?[\s.-]\d{3,4}[\s.-]?\d{3,4}",
    "card": r"(\d[ -]?){12,18}\d",
    "ip": r"((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)|"
          r"([0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|"
          r"([0-9A-Fa-f]{1,4}(:[0-9A-Fa-f]{1,4})*)?::([0-9A-Fa-f]{1,4}(:[0-9A-Fa-f]{1,4})*)?",
}
#: Each pattern as the whole value (blanks around it allowed).
_WHOLE = {what: rf"^\s*(?:{pattern})\s*$" for what, pattern in _PATTERNS.items()}
#: At ingest an e-mail address anywhere in a value counts; the others are the whole value.
_INGEST = {**_WHOLE, "e-mail": _PATTERNS["e-mail"]}
#: The same, compiled once for ``init``'s samples of a few hundred values (an Arrow call
#: compiles its pattern each time: ~4x slower there). ASCII: \d and \s as RE2 reads them.
_WHOLE_RE = {what: re.compile(pattern, re.ASCII) for what, pattern in _WHOLE.items()}
#: The kind ``init`` names for each pattern; looked for in any column, whatever its name.
_BY_VALUE = {"e-mail": "e-mail addresses", "phone": "phone numbers",
             "card": "card or account numbers", "ip": "IP addresses"}
_BY_VALUE_ONLY = tuple(_BY_VALUE.values())
#: What else confirms a column's name: its kind's values as written without the marks the
#: shared patterns need (a bare phone number, an IBAN), and the kinds no value alone
#: reveals. They never stand alone: on their own, digits are ids as often as phones.
_NAMED_VALUE = {
    "phone numbers": re.compile(r"^\+?[0-9]{7,15}$"),
    "card or account numbers": re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{10,30}$"),
    "national ids": re.compile(r"^[A-Z0-9][A-Z0-9 -]{5,14}$", re.IGNORECASE),
    "postal codes": re.compile(r"^(?=.*\d)[A-Z0-9][A-Z0-9 -]{1,8}[A-Z0-9]$", re.IGNORECASE),
    "person names": re.compile(r"^[^\W\d_][^\d@]*$"),
    "addresses": re.compile(r"^(?=.*\d)(?=.*[^\W\d_]).{6,}$"),
}
#: Kinds whose values are free text: confirmed only when they are also many and varied.
_VARIED = ("person names", "addresses")


def _texts(sample: Sequence[object]) -> list[str]:
    """The sample as stripped text: whole numbers without ".0", missing values left out."""
    out = []
    for v in sample:
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, float):
            if v != v or not v.is_integer():
                continue
            v = int(v)
        text = str(v).strip()
        if text:
            out.append(text)
    return out


def looks_like(kind: str, sample: Sequence[object], *, alone: bool = False) -> bool:
    """Whether at least 80% of a sample's values look like ``kind`` of personal data (one
    of :data:`KINDS`), enough to confirm a column named so; ``alone``: by the patterns that
    suffice without a name, those the ingest scrub uses. Names and addresses also need
    varied values (a few repeated levels are a category).

    >>> looks_like("phone numbers", ["+44 20 7946 0001", "020 7946 0002"])
    True
    >>> looks_like("phone numbers", ["yes", "no", "yes"])
    False
    """
    text = _texts(sample)
    if not text:
        return False
    if _matches(kind, text, alone).sum() < 0.8 * len(text):
        return False
    if kind in _VARIED:
        return len(set(text)) >= max(3, 0.3 * len(text))
    return True


def _matches(kind: str, text: list[str], alone: bool) -> np.ndarray:
    """Per value, whether it looks like ``kind`` of personal data as a whole (``alone``:
    by the shared patterns only)."""
    found = np.zeros(len(text), dtype=bool)
    what = next((w for w, named in _BY_VALUE.items() if named == kind), None)
    if what is not None:
        found[:] = [bool(_WHOLE_RE[what].match(v)) for v in text]
        if what == "card" and found.any():
            hits = np.flatnonzero(found)
            found[hits] = _luhn(pa.array([text[i] for i in hits], pa.string()))
    if kind in _NAMED_VALUE and not alone:
        found |= np.array([bool(_NAMED_VALUE[kind].match(v)) for v in text], dtype=bool)
    return found


def value_kind(sample: list[object], kinds: tuple[str, ...] = _BY_VALUE_ONLY) -> str | None:
    """The kind of personal data a sample of values looks like, or None. By default only
    the kinds that are unmistakable from values alone (e-mails, phones, cards, IPs).

    >>> value_kind(["ann@example.org", "bob@example.com"]), value_kind(["1", "2"])
    ('e-mail addresses', None)
    """
    text = _texts(sample)
    if len(text) < 5 and len(text) != len([v for v in sample if v is not None]):
        return None
    return next((kind for kind in kinds if looks_like(kind, text, alone=True)), None)


def named_kind(name: str) -> str | None:
    """The kind of personal data a column's name suggests, or None.

    >>> named_kind("Telephone"), named_kind("customer_email"), named_kind("amount")
    ('phone numbers', 'e-mail addresses', None)
    """
    words = re.sub(r"[^a-z0-9]+", "_", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower())
    for kind, pattern in _NAMED.items():
        if re.search(rf"(^|_)({pattern.pattern})($|_)", words):
            return kind
    return None


@dataclass(frozen=True)
class Guess:
    """Whether a column holds personal data, and why (shown by ``init``)."""

    personal: bool
    reason: str


def assess(name: str, sample: list[object]) -> Guess | None:
    """Whether a column looks like personal data: by its values, or by its name confirmed
    by its values. None when nothing suggests it.

    >>> assess("telephone", ["yes", "no"] * 5)
    Guess(personal=False, reason='named like phone numbers, but its values are not')
    >>> assess("contact", ["ann@example.org", "bob@example.com"]).reason
    'values look like e-mail addresses'
    """
    named = named_kind(name)
    if named is not None:
        if len(_texts(sample)) < 5:  # too few values to contradict the name: stay safe
            return Guess(True, f"named like {named}, too few values to check")
        if looks_like(named, sample):
            return Guess(True, f"named like {named} and its values look like them")
        found = value_kind(sample)
        if found is not None:
            return Guess(True, f"values look like {found}")
        return Guess(False, f"named like {named}, but its values are not")
    found = value_kind(sample)
    return Guess(True, f"values look like {found}") if found else None


def detect(name: str, sample: list[object]) -> str | None:
    """Why a column looks like personal data, or None (see :func:`assess`).

    >>> detect("contact", ["ann@example.org", "bob@example.com"])
    'values look like e-mail addresses'
    >>> names = ["Ann Lee", "Bo Chen", "Cy Diaz", "Di Eze", "Ed Fox"]
    >>> detect("customer_name", names), detect("amount", [1.5])
    ('named like person names and its values look like them', None)
    """
    guess = assess(name, sample)
    return guess.reason if guess is not None and guess.personal else None


def key_from_env() -> bytes | None:
    key = os.environ.get(KEY_ENV)
    return key.encode("utf-8") if key else None


def pseudonym(value: object, key: bytes) -> str:
    """The keyed hash (HMAC-SHA256, hex) written in place of a personal value."""
    return _digest(key, str(value))


def key_check(key: bytes | None) -> str | None:
    """A short keyed digest that tells two keys apart without showing either (None: no
    key), so a batch hashed elsewhere can be matched to the server's key."""
    return None if key is None else _digest(key, "watchkeeper key check")[:16]


def protect(table: pa.Table, modes: dict[str, str], key: bytes | None) -> pa.Table:
    """Hash or drop the personal-data columns of a batch (``modes``: column → hash|drop).
    Without a key, columns to hash are dropped: nothing personal is ever kept in clear."""
    for name, mode in modes.items():
        if name not in table.column_names:
            continue
        i = table.column_names.index(name)
        if mode == "drop" or key is None:
            table = table.remove_column(i)
            continue
        values = missing_as_null(table.select([i])).column(0)  # blanks stay missing
        hashed = [None if v is None else pseudonym(v, key) for v in values.to_pylist()]
        table = table.set_column(i, name, pa.array(hashed, type=pa.string()))
    return table


# -- at ingest: columns the suite does not know, and client ids ------------------------------
#: Arrow type ids of columns that cannot hold personal data as text or card numbers
_NO_TEXT = frozenset(t.id for t in (
    pa.float16(), pa.float32(), pa.float64(), pa.bool_(), pa.null(), pa.date32(),
    pa.date64(), pa.timestamp("s"), pa.time64("us"), pa.duration("s"), pa.decimal128(1)))
#: hex digits of a client pseudonym: 64 bits, no collision among millions of clients
CLIENT_DIGITS = 16


def luhn(digits: str) -> bool:
    """The Luhn checksum of a card number holds (every payment card number passes it),
    and its first digit is one card numbers start with.

    >>> luhn("4111 1111 1111 1111"), luhn("4111 1111 1111 1112"), luhn("1111111111116")
    (True, False, False)
    """
    return bool(_luhn(pa.array([digits]))[0])


def _luhn(values: pa.Array) -> np.ndarray:
    """Per value (up to 19 digits, anything else between them ignored), whether its Luhn
    checksum holds; on a matrix of the digits, right-aligned (leading zeros change nothing)."""
    import pyarrow.compute as pc

    digits = pc.replace_substring_regex(pc.cast(values, pa.string()), r"[^0-9]", "")
    padded = pc.utf8_lpad(pc.utf8_slice_codeunits(digits, 0, 19), 19, "0")
    text = "".join(padded.fill_null("0" * 19).to_pylist()).encode("ascii")
    matrix = (np.frombuffer(text, np.uint8).reshape(-1, 19) - ord("0"))[:, ::-1].astype(int)
    doubled = 2 * matrix[:, 1::2]
    total = matrix[:, 0::2].sum(axis=1) + np.where(doubled > 9, doubled - 9, doubled).sum(axis=1)
    # card numbers start with 2 to 6 (timestamps in ms, µs or ns since 1970 start with 1)
    first = pc.utf8_slice_codeunits(digits, 0, 1).fill_null("")
    issued = pc.is_in(first, value_set=pa.array(list("23456"))).to_numpy(zero_copy_only=False)
    return (total % 10 == 0) & issued


def _leaves(column: pa.ChunkedArray | pa.Array) -> tuple[list[pa.Array], list[pa.Array]]:
    """A column's string and integer arrays, nested columns (lists, structs, maps) flattened
    and dictionaries decoded."""
    import pyarrow.compute as pc

    strings: list[pa.Array] = []
    integers: list[pa.Array] = []
    stack = [column]
    while stack:
        part = stack.pop()
        if pa.types.is_dictionary(part.type):
            part = pc.cast(part, part.type.value_type)
        chunks = part.chunks if isinstance(part, pa.ChunkedArray) else [part]
        if pa.types.is_nested(part.type):
            stack.extend(child for chunk in chunks for child in _children(chunk))
        elif pa.types.is_integer(part.type):
            integers.extend(chunks)
        elif pa.types.is_string(part.type) or pa.types.is_large_string(part.type):
            strings.extend(chunks)
    return strings, integers


def personal_columns(columns: list[pa.ChunkedArray | pa.Array]) -> dict[int, str]:
    """Which columns hold a value that looks like personal data, by position, and what
    (e-mail, phone, card, ip). Unlike ``detect`` (a majority of a reference sample, at
    ``init``), one value is enough: this guards what is stored, not how a column is
    profiled. Every string value of every column goes through each pattern at once, so the
    cost is per value, not per column (a batch may have thousands of columns)."""
    import pyarrow.compute as pc

    found: dict[int, str] = {}
    text: dict[str, list] = {"parts": [], "owners": [], "sizes": []}
    numbers: dict[str, list] = {"parts": [], "owners": [], "sizes": []}
    string_id = pa.string().id
    for i, column in enumerate(columns):
        kind = column.type.id
        if kind in _NO_TEXT:  # most columns: cheap to tell apart
            continue
        if kind == string_id:  # the usual text column: no conversion needed
            chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
            strings, integers = chunks, list[pa.Array]()
        else:
            strings, integers = _leaves(column)
        for into, leaves in ((text, strings), (numbers, integers)):
            for leaf in leaves:
                into["parts"].append(leaf)
                into["owners"].append(i)
                into["sizes"].append(len(leaf))
    if numbers["parts"]:  # card numbers sent as numbers
        values = np.abs(pa.concat_arrays([pc.cast(n, pa.int64(), safe=False)
                                          for n in numbers["parts"]]).fill_null(0).to_numpy())
        owner = np.repeat(numbers["owners"], numbers["sizes"])
        big = np.flatnonzero(values >= 10**12)  # 13 digits and more
        for i in np.unique(owner[big][_luhn(pa.array(values[big]))]):
            found.setdefault(int(i), "card")
    if text["parts"]:
        parts = [p if p.type.id == string_id else pc.cast(p, pa.string())
                 for p in text["parts"]]
        owner = np.repeat(text["owners"], text["sizes"])
        for what, hits in _hits(pa.concat_arrays(parts)).items():
            for i in np.unique(owner[hits]):
                found.setdefault(int(i), what)
    return found


def _hits(values: pa.Array, patterns: dict[str, str] = _INGEST) -> dict[str, np.ndarray]:
    """Per kind of personal data (of ``patterns``), the positions of the strings that look
    like it; card numbers also pass :func:`luhn`."""
    import pyarrow.compute as pc

    out = {}
    for what, pattern in patterns.items():
        hits = np.flatnonzero(pc.match_substring_regex(values, pattern).fill_null(False)
                              .to_numpy(zero_copy_only=False))
        if what == "card" and len(hits):
            hits = hits[_luhn(values.take(pa.array(hits)))]
        out[what] = hits
    return out


def personal_strings(values: list[str]) -> list[bool]:
    """Per string (column names, say), whether it looks like personal data itself.

    >>> personal_strings(["age", "ann@example.org", "10.0.0.1"])
    [False, True, True]
    """
    found = np.zeros(len(values), dtype=bool)
    for hits in _hits(pa.array(values, pa.string())).values():
        found[hits] = True
    return found.tolist()


def personal_values(column: pa.ChunkedArray | pa.Array) -> str | None:
    """What personal data any value of a column looks like (see ``personal_columns``).

    >>> personal_values(pa.array(["ok", "write to ann@example.org"]))
    'e-mail'
    >>> personal_values(pa.array(["2024-01-31", "10:30:00", "v1.2", None]))
    >>> personal_values(pa.array([4111111111111111, 12]))
    'card'
    >>> personal_values(pa.array([[{"to": ["ann@example.org"]}], None]))
    'e-mail'
    """
    return personal_columns([column]).get(0)


def _children(column: pa.Array) -> list[pa.Array]:
    """The values a nested array holds, one level down."""
    if isinstance(column, pa.MapArray):
        return [column.keys, column.items]
    if isinstance(column, pa.StructArray):
        return column.flatten()
    if pa.types.is_union(column.type):
        return [column.field(i) for i in range(column.type.num_fields)]
    return [column.flatten()]  # list, large list, fixed-size list


def scrub_unknown(table: pa.Table, known: set[str], key: bytes | None
                  ) -> tuple[pa.Table, dict[str, str]]:
    """Hash (with ``key``) or, without a key, drop every column outside ``known`` (the
    suite's columns and the reserved ones the caller keeps) whose name or values look like
    personal data, before a batch is stored. Returns the batch and what was done to each
    such column ("hashed" or "dropped").

    >>> t = pa.table({"x": [1.0], "mail": ["a@b.org"], "note": ["fine"]})
    >>> out, done = scrub_unknown(t, {"x"}, b"k")
    >>> done, out.column("mail")[0].as_py() == pseudonym("a@b.org", b"k")
    ({'mail': 'hashed'}, True)
    >>> scrub_unknown(t, {"x"}, None)[0].column_names
    ['x', 'note']
    """
    by_name = dict(zip(table.column_names, table.columns, strict=True))
    unknown = [name for name in by_name if name not in known]
    by_value = personal_columns([by_name[name] for name in unknown])
    flagged = [name for i, name in enumerate(unknown) if i in by_value or named_kind(name)]
    if key is None:
        return table.drop_columns(flagged), dict.fromkeys(flagged, "dropped")
    for name in flagged:
        i = table.column_names.index(name)
        table = table.set_column(i, name, hash_column(table.column(name), key))
    return table, dict.fromkeys(flagged, "hashed")


def client_pseudonym(value: object, key: bytes) -> str:
    """The stable pseudonym a client id is stored and shown as: a short keyed hash.

    >>> client_pseudonym("ann@example.org", b"k") == client_pseudonym("ann@example.org", b"k")
    True
    >>> len(client_pseudonym("ann@example.org", b"k"))
    16
    """
    return pseudonym(value, key)[:CLIENT_DIGITS]


def hash_column(column: pa.ChunkedArray, key: bytes, digits: int = 64) -> pa.ChunkedArray:
    """Each value replaced by its ``pseudonym`` cut to ``digits`` hex digits (missing
    values stay missing); each distinct value is hashed once."""
    import pyarrow.compute as pc

    try:
        values = pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # lists, structs...
        values = pa.chunked_array([pa.array(
            [None if v is None else str(v) for v in column.to_pylist()], pa.string())])
    distinct = pc.unique(values).drop_null()
    names = pa.array([_digest(key, v)[:digits] for v in distinct.to_pylist()], pa.string())
    return pc.take(names, pc.index_in(values, value_set=distinct))


@functools.lru_cache(maxsize=65_536)  # client ids and other values recur batch after batch
def _digest(key: bytes, value: str) -> str:
    return hmac.digest(key, value.encode("utf-8"), "sha256").hex()


def pseudonymise_clients(table: pa.Table, column: str, key: bytes) -> pa.Table:
    """Replace a batch's client ids (``column``) by their ``client_pseudonym``."""
    if column not in table.column_names:
        return table
    i = table.column_names.index(column)
    return table.set_column(i, column, hash_column(table.column(column), key, CLIENT_DIGITS))
