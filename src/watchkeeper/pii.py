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

import pyarrow as pa

KEY_ENV = "WATCHKEEPER_PII_KEY"
MODES = ("hash", "drop")

_NAME = re.compile(
    r"(^|_)(e_?mail|phone|mobile|tel|telephone|first_?name|last_?name|surname|full_?name|"
    r"name|ssn|social_security|passport|address|street|postcode|zip_?code|ip_?address|"
    r"iban|credit_?card|card_?number)($|_)", re.IGNORECASE)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}|^\d{1,2}[/.]\d{1,2}[/.]\d{2,4}")
_VALUE = {
    "e-mail addresses": re.compile(r"^[\w.+-]+@[\w-]+\.[\w.-]+$"),
    "phone numbers": re.compile(r"^\+?[\d\s().-]{7,20}$"),
    "card or account numbers": re.compile(r"^(\d[ -]?){13,19}$|^[A-Z]{2}\d{2}[A-Z0-9]{10,30}$"),
}


def detect(name: str, sample: list[object]) -> str | None:
    """Why a column looks like personal data, or None.

    >>> detect("contact", ["ann@example.org", "bob@example.com"])
    'values look like e-mail addresses'
    >>> detect("customer_name", ["x"]), detect("amount", [1.5])
    ('named like personal data', None)
    """
    if _NAME.search(name):
        return "named like personal data"
    text = [str(v).strip() for v in sample if isinstance(v, str) and v.strip()]
    if len(text) >= 5 or (text and len(text) == len(sample)):
        for what, pattern in _VALUE.items():
            if sum(bool(pattern.match(v)) for v in text) >= 0.8 * len(text):
                # short plain numbers and dates are not phone numbers
                if what == "phone numbers" and any(
                    sum(ch.isdigit() for ch in v) < 8 or _DATE.match(v) for v in text):
                    continue
                return f"values look like {what}"
    return None


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
        hashed = [None if v is None else pseudonym(v, key)
                  for v in table.column(name).to_pylist()]
        table = table.set_column(i, name, pa.array(hashed, type=pa.string()))
    return table
