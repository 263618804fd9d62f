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

import hashlib
import hmac
import os
import re
from dataclasses import dataclass

import pyarrow as pa

from watchkeeper.data import missing_as_null

KEY_ENV = "WATCHKEEPER_PII_KEY"
MODES = ("hash", "drop")

#: Names that suggest personal data, and what their values should look like to confirm it.
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
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}|^\d{1,2}[/.]\d{1,2}[/.]\d{2,4}")
#: What the values of each kind of personal data look like.
_VALUE = {
    "e-mail addresses": re.compile(r"^[\w.+-]+@[\w-]+\.[\w.-]+$"),
    "phone numbers": re.compile(r"^\+?[\d\s().-]{7,20}$"),
    "card or account numbers": re.compile(r"^(\d[ -]?){13,19}$|^[A-Z]{2}\d{2}[A-Z0-9]{10,30}$"),
    "IP addresses": re.compile(r"^(\d{1,3}\.){3}\d{1,3}$|^[0-9a-fA-F:]*:[0-9a-fA-F:]+$"),
    "national ids": re.compile(r"^[A-Z0-9][A-Z0-9 -]{5,14}$", re.IGNORECASE),
    "postal codes": re.compile(r"^(?=.*\d)[A-Z0-9][A-Z0-9 -]{1,8}[A-Z0-9]$", re.IGNORECASE),
    "person names": re.compile(r"^[^\W\d_][^\d@]*$"),
    "addresses": re.compile(r"^(?=.*\d)(?=.*[^\W\d_]).{6,}$"),
}
#: Looked for in the values of any column, whatever its name.
_BY_VALUE_ONLY = ("e-mail addresses", "phone numbers", "card or account numbers",
                  "IP addresses")
#: Kinds whose values are free text: confirmed only when they are also many and varied.
_VARIED = ("person names", "addresses")


def _texts(sample: list[object]) -> list[str]:
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


def looks_like(kind: str, sample: list[object]) -> bool:
    """Whether at least 80% of a sample's values look like ``kind`` of personal data (one
    of :data:`KINDS`). Short plain numbers and dates are not phone numbers; names and
    addresses also need varied values (a few repeated levels are a category).

    >>> looks_like("phone numbers", ["+44 20 7946 0001", "020 7946 0002"])
    True
    >>> looks_like("phone numbers", ["yes", "no", "yes"])
    False
    """
    text = _texts(sample)
    if not text:
        return False
    pattern = _VALUE[kind]
    if sum(bool(pattern.match(v)) for v in text) < 0.8 * len(text):
        return False
    if kind == "phone numbers" and any(
            sum(ch.isdigit() for ch in v) < 7 or _DATE.match(v) for v in text):
        return False
    if kind in _VARIED:
        return len(set(text)) >= max(3, 0.3 * len(text))
    return True


#: Every kind of personal data recognised by its values.
KINDS = tuple(_VALUE)


def value_kind(sample: list[object], kinds: tuple[str, ...] = _BY_VALUE_ONLY) -> str | None:
    """The kind of personal data a sample of values looks like, or None. By default only
    the kinds that are unmistakable from values alone (e-mails, phones, cards, IPs).

    >>> value_kind(["ann@example.org", "bob@example.com"]), value_kind(["1", "2"])
    ('e-mail addresses', None)
    """
    text = _texts(sample)
    if len(text) < 5 and len(text) != len([v for v in sample if v is not None]):
        return None
    return next((kind for kind in kinds if looks_like(kind, text)), None)


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
    """The keyed hash written in place of a personal value."""
    return hmac.new(key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()


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
