"""Declarative rules: a small, safe expression language evaluated on Arrow tables.

A rule states what must hold for every row (``amount <= limit``); rows where it is false
violate it. The language has numbers, strings (``'a'`` or ``"a"``), ``true``/``false``,
column names (a name with spaces or other characters between backquotes),
arithmetic ``+ - * /`` (in floating point), comparisons ``< <= > >= == !=``, ``and``,
``or``, ``not``, parentheses and two functions, ``isnull(x)`` (null or NaN) and ``abs(x)``.
Nothing is handed to Python's ``eval``: the text is parsed here into a tree, and the tree
is evaluated column-wise with :mod:`pyarrow.compute`.

Missing values follow SQL: a comparison with a missing value is unknown, ``false and
unknown`` is false, ``true or unknown`` is true; a row whose result is unknown is not
checked (write ``isnull(limit) or amount <= limit`` to accept a missing limit).

>>> rule = Rule.parse("amount_within_limit", "amount <= limit")
>>> sorted(rule.columns)
['amount', 'limit']
>>> t = pa.table({"amount": [1.0, 5.0, None, 3.0], "limit": [2.0, 4.0, 1.0, None]})
>>> rule.tally(t).tolist()  # violated, checked, not checked
[1, 2, 2]
>>> Rule.parse("r", "amount <= ")
Traceback (most recent call last):
...
watchkeeper.errors.SuiteError: rules.r.expr: position 11: expected a value, got the end
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from watchkeeper.errors import SuiteError

#: Fields of a rule's tally in a profile (``Profile.joint["rule:NAME"]``).
TALLY_FIELDS = ("violated", "checked", "unchecked")
#: Prefix of a rule's tally key in ``Profile.joint``.
TALLY_PREFIX = "rule:"
#: Functions the language knows, with their arity.
FUNCTIONS = {"isnull": 1, "abs": 1}
_KEYWORDS = {"and", "or", "not", "true", "false"}
_COMPARE = {"<": "less", "<=": "less_equal", ">": "greater", ">=": "greater_equal",
            "==": "equal", "!=": "not_equal"}
_ARITH = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide"}
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<quoted>`[^`]+`)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|==|!=|[<>+\-*/(),])
""", re.VERBOSE)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, name, quoted, op, keyword, end
    text: str
    at: int  # 0-based offset in the expression


@dataclass(frozen=True)
class Node:
    """One node of a parsed expression: ``op`` is ``col``, ``lit``, ``call``, ``not``,
    ``neg``, ``and``, ``or``, a comparison or an arithmetic operator."""

    op: str
    args: tuple[Any, ...]
    at: int

    @property
    def boolean(self) -> bool:
        """Whether the node is a condition (its value is true or false)."""
        return (self.op in _COMPARE or self.op in ("and", "or", "not")
                or (self.op == "call" and self.args[0] == "isnull")
                or (self.op == "lit" and isinstance(self.args[0], bool)))


class _Parser:
    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
        self.tokens = self._tokens()
        self.i = 0

    def error(self, at: int, problem: str) -> SuiteError:
        return SuiteError(self.where, f"position {at + 1}: {problem}")

    def _tokens(self) -> list[Token]:
        out: list[Token] = []
        at = 0
        while at < len(self.text):
            m = _TOKEN.match(self.text, at)
            if m is None:
                raise self.error(at, f"unexpected character {self.text[at]!r}")
            kind = m.lastgroup or ""
            if kind != "space":
                word = m.group()
                if kind == "name" and word in _KEYWORDS:
                    kind = "keyword"
                out.append(Token(kind, word, at))
            at = m.end()
        out.append(Token("end", "", len(self.text)))
        return out

    @property
    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def accept(self, *texts: str) -> Token | None:
        tok = self.peek
        if tok.kind in ("op", "keyword") and tok.text in texts:
            self.i += 1
            return tok
        return None

    def got(self, tok: Token) -> str:
        return "the end" if tok.kind == "end" else repr(tok.text)

    def parse(self) -> Node:
        if self.peek.kind == "end":
            raise self.error(0, "the expression is empty")
        node = self.disjunction()
        if self.peek.kind != "end":
            raise self.error(self.peek.at, f"unexpected {self.got(self.peek)}")
        return node

    def disjunction(self) -> Node:
        node = self.conjunction()
        while (tok := self.accept("or")) is not None:
            node = Node("or", (node, self.conjunction()), tok.at)
        return node

    def conjunction(self) -> Node:
        node = self.negation()
        while (tok := self.accept("and")) is not None:
            node = Node("and", (node, self.negation()), tok.at)
        return node

    def negation(self) -> Node:
        tok = self.accept("not")
        if tok is not None:
            return Node("not", (self.negation(),), tok.at)
        return self.comparison()

    def comparison(self) -> Node:
        node = self.sum()
        tok = self.accept(*_COMPARE)
        if tok is not None:
            node = Node(tok.text, (node, self.sum()), tok.at)
            if self.peek.kind == "op" and self.peek.text in _COMPARE:
                raise self.error(self.peek.at, "comparisons do not chain; join them with and")
        return node

    def sum(self) -> Node:
        node = self.product()
        while (tok := self.accept("+", "-")) is not None:
            node = Node(tok.text, (node, self.product()), tok.at)
        return node

    def product(self) -> Node:
        node = self.unary()
        while (tok := self.accept("*", "/")) is not None:
            node = Node(tok.text, (node, self.unary()), tok.at)
        return node

    def unary(self) -> Node:
        tok = self.accept("-")
        if tok is not None:
            return Node("neg", (self.unary(),), tok.at)
        return self.atom()

    def atom(self) -> Node:
        tok = self.take()
        if tok.kind == "number":
            value = float(tok.text)
            return Node("lit", (int(value) if value.is_integer() and "." not in tok.text
                                and "e" not in tok.text.lower() else value,), tok.at)
        if tok.kind == "string":
            body = re.sub(r"\\(.)", r"\1", tok.text[1:-1])
            return Node("lit", (body,), tok.at)
        if tok.kind == "keyword" and tok.text in ("true", "false"):
            return Node("lit", (tok.text == "true",), tok.at)
        if tok.kind == "quoted":
            return Node("col", (tok.text[1:-1],), tok.at)
        if tok.kind == "name":
            if self.accept("(") is None:
                return Node("col", (tok.text,), tok.at)
            if tok.text not in FUNCTIONS:
                raise self.error(tok.at, f"unknown function {tok.text!r}; known: "
                                         f"{', '.join(FUNCTIONS)}")
            args = [self.disjunction()]
            while self.accept(",") is not None:
                args.append(self.disjunction())
            if self.accept(")") is None:
                raise self.error(self.peek.at, f"expected ')', got {self.got(self.peek)}")
            if len(args) != FUNCTIONS[tok.text]:
                raise self.error(tok.at, f"{tok.text}() takes {FUNCTIONS[tok.text]} "
                                         f"argument, got {len(args)}")
            return Node("call", (tok.text, *args), tok.at)
        if tok.kind == "op" and tok.text == "(":
            node = self.disjunction()
            if self.accept(")") is None:
                raise self.error(self.peek.at, f"expected ')', got {self.got(self.peek)}")
            return node
        raise self.error(tok.at, f"expected a value, got {self.got(tok)}")


def _columns(node: Node) -> set[str]:
    if node.op == "col":
        return {node.args[0]}
    out: set[str] = set()
    for arg in node.args:
        if isinstance(arg, Node):
            out |= _columns(arg)
    return out


class Unevaluable(Exception):
    """A rule that cannot be evaluated on a table (a column it names is absent, or values
    of a type its operators do not take): its rows are counted as not checked."""


def _numeric(value: Any) -> Any:
    """Values of arithmetic, as float64 (so ``/`` never divides integers)."""
    if isinstance(value, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_integer(value.type) or pa.types.is_floating(value.type) or \
                pa.types.is_decimal(value.type) or pa.types.is_boolean(value.type):
            return value.cast(pa.float64())
        raise Unevaluable(f"arithmetic on {value.type} values")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise Unevaluable(f"arithmetic on {value!r}")


def _column(table: pa.Table, name: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise Unevaluable(f"no column {name!r}")
    column = table.column(name)
    if pa.types.is_floating(column.type):  # NaN is missing, as the profile counts it
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
    elif pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column


def _evaluate(node: Node, table: pa.Table) -> Any:
    op, args = node.op, node.args
    if op == "lit":
        return args[0]
    if op == "col":
        return _column(table, args[0])
    if op == "call":
        value = _evaluate(args[1], table)
        if args[0] == "isnull":
            if not isinstance(value, (pa.Array, pa.ChunkedArray)):
                return pa.array(np.full(table.num_rows, value is None))
            return pc.is_null(value, nan_is_null=True)
        return pc.abs(_numeric(value))
    if op == "not":
        return pc.invert(_evaluate(args[0], table))
    if op == "neg":
        return pc.negate(_numeric(_evaluate(args[0], table)))
    left, right = (_evaluate(a, table) for a in args)
    if op == "and":
        return pc.and_kleene(left, right)
    if op == "or":
        return pc.or_kleene(left, right)
    if op in _ARITH:
        left, right = _numeric(left), _numeric(right)
        if op == "/":  # a division by zero is unknown (null), not ±inf
            right = pc.if_else(pc.equal(right, 0.0), pa.scalar(None, pa.float64()), right) \
                if not isinstance(right, float) else (None if right == 0.0 else right)
            if right is None:
                return pa.nulls(table.num_rows, pa.float64())
        return getattr(pc, _ARITH[op])(left, right)
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        left = pa.array(np.full(table.num_rows, left))
    return getattr(pc, _COMPARE[op])(left, right)


@dataclass(frozen=True)
class Rule:
    """A named condition every row should meet (see the module's documentation)."""

    name: str
    expr: str
    tree: Node

    @classmethod
    def parse(cls, name: Any, expr: Any, where: str | None = None) -> Rule:
        """Parse ``expr``; a :class:`SuiteError` naming ``where`` (default
        ``rules.NAME.expr``) and the position of the problem when it is not valid."""
        where = where or f"rules.{name}.expr"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SuiteError(where.rsplit(".", 1)[0] + ".name" if "." in where else where,
                             f"a rule's name is letters, digits, _ . or -, starting with a "
                             f"letter; got {name!r}")
        if not isinstance(expr, str):
            raise SuiteError(where, f"expected an expression as a string, got {expr!r}")
        tree = _Parser(expr, where).parse()
        if not (tree.boolean or tree.op == "col"):
            raise SuiteError(where, f"position {tree.at + 1}: a rule is a condition (a "
                                    "comparison, isnull(), and/or/not), not a value")
        return cls(name, expr, tree)

    @property
    def columns(self) -> set[str]:
        """The columns the rule reads."""
        return _columns(self.tree)

    @property
    def key(self) -> str:
        """The rule's tally key in ``Profile.joint``."""
        return TALLY_PREFIX + self.name

    def tally(self, table: pa.Table) -> np.ndarray:
        """(rows violating the rule, rows checked, rows not checked) of ``table``: a row is
        not checked when the rule's value is unknown there, or the rule cannot be evaluated
        on the table at all (a column absent, values of the wrong type)."""
        rows = table.num_rows
        try:
            result = _evaluate(self.tree, table)
            if not isinstance(result, (pa.Array, pa.ChunkedArray)):
                result = pa.array(np.full(rows, result)) if result is not None else \
                    pa.nulls(rows, pa.bool_())
            if not pa.types.is_boolean(result.type):
                raise Unevaluable(f"the rule's value is {result.type}, not true/false")
        except (Unevaluable, pa.ArrowException, TypeError, ValueError):
            return np.array([0, 0, rows], dtype=np.int64)
        checked = rows - result.null_count
        held = pc.sum(result).as_py() or 0
        return np.array([checked - held, checked, rows - checked], dtype=np.int64)

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "expr": self.expr}


def parse_rules(raw: Any, where: str = "rules") -> list[Rule]:
    """Rules from the suite file's ``rules:`` list (``- name: N`` / ``expr: E``) or from a
    mapping of name to expression; duplicate names are an error."""
    if isinstance(raw, dict):
        raw = [{"name": k, "expr": v} for k, v in raw.items()]
    if not isinstance(raw, list):
        raise SuiteError(where, f"expected a list of {{name, expr}}, got {raw!r}")
    rules: list[Rule] = []
    for i, item in enumerate(raw):
        if isinstance(item, Rule):
            rules.append(item)
            continue
        if not isinstance(item, dict) or set(item) - {"name", "expr"} or "expr" not in item:
            raise SuiteError(f"{where}[{i}]", f"expected a mapping with name and expr, "
                                              f"got {item!r}")
        rules.append(Rule.parse(item.get("name"), item["expr"], f"{where}[{i}].expr"))
        if rules[-1].name in (r.name for r in rules[:-1]):
            raise SuiteError(f"{where}[{i}].name", f"a second rule named {rules[-1].name!r}")
    return rules
