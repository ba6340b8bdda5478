"""The search's objective and constraints, written in the mixture's group names.

An *expression* is a weighted sum of group losses (validation loss, nats per token, on the held-out windows)::

    mean(zh_corpus, zh_inst)          the mean of two groups' losses
    zh_corpus                         one group's loss
    0.7 * zh_corpus + 0.3 * zh_inst   weights (any real numbers; ``-`` subtracts)

The objective is an expression to minimise. A constraint bounds an expression from above, either by a number
or by the reference schedule's value plus a margin::

    en_corpus <= reference + 0.02     not more than 0.02 nats above the reference's English loss
    mean(en_corpus, en_inst) <= 5.5

``reference`` is the same expression evaluated on the reference schedule (the mixture the search starts from).
Write spaces around a minus sign: a group name may itself contain ``-``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping

from ..errors import ChatflowError

_TOKEN = re.compile(r"\s*(?:(?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
                    r"|(?P<name>[^\s(),*+<=-][^\s(),*+<=]*)|(?P<op><=|[(),*+-]))")


@dataclass(frozen=True)
class Expression:
    """sum_g weights[g] * loss_g, as written in ``text``."""

    text: str
    weights: tuple[tuple[str, float], ...]

    @property
    def groups(self) -> list[str]:
        return [g for g, _ in self.weights]

    def value(self, losses: Mapping[str, float]) -> float:
        return float(sum(w * losses[g] for g, w in self.weights))


@dataclass(frozen=True)
class Constraint:
    """``expression <= bound`` (``relative``: bound = the reference's value + ``bound``)."""

    text: str
    expression: Expression
    bound: float
    relative: bool

    def limit(self, reference: Mapping[str, float] | None) -> float:
        if not self.relative:
            return self.bound
        if reference is None:
            raise ChatflowError(f"constraint {self.text!r} compares with the reference, which has no losses")
        return self.expression.value(reference) + self.bound

    def excess(self, losses: Mapping[str, float], reference: Mapping[str, float] | None) -> float:
        """How far ``losses`` are above the limit (<= 0: satisfied)."""
        return self.expression.value(losses) - self.limit(reference)


def _tokens(text: str, what: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ChatflowError(f"{what} {text!r}: cannot read {text[pos:].strip()[:20]!r}")
        kind = match.lastgroup
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


_WORDS = {"name": "a group name", "number": "a number", "op": "an operator"}


class _Parser:
    def __init__(self, text: str, groups: list[str], what: str):
        self.text, self.groups, self.what = text, groups, what
        self.tokens = _tokens(text, what)
        self.pos = 0

    def error(self, message: str) -> ChatflowError:
        return ChatflowError(f"{self.what} {self.text!r}: {message}")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str | None = None, value: str | None = None) -> str:
        token = self.peek()
        if token is None or (kind and token[0] != kind) or (value and token[1] != value):
            want = repr(value) if value else _WORDS.get(kind, "more")
            raise self.error(f"expected {want}" + (f", got {token[1]!r}" if token else " at the end"))
        self.pos += 1
        return token[1]

    def group(self, name: str) -> str:
        if name not in self.groups:
            raise self.error(f"{name!r} is not a group of the mixture ({', '.join(self.groups)})")
        return name

    def atom(self) -> dict[str, float]:
        name = self.take("name")
        if name == "mean" and self.peek() == ("op", "("):
            self.take("op", "(")
            members = [self.group(self.take("name"))]
            while self.peek() == ("op", ","):
                self.take("op", ",")
                members.append(self.group(self.take("name")))
            self.take("op", ")")
            return {g: 1.0 / len(members) for g in members}
        return {self.group(name): 1.0}

    def term(self) -> dict[str, float]:
        if self.peek() and self.peek()[0] == "number":
            factor = float(self.take("number"))
            self.take("op", "*")
            return {g: factor * w for g, w in self.atom().items()}
        return self.atom()

    def expression(self, stop: tuple = ()) -> dict[str, float]:
        sign = 1.0
        if self.peek() == ("op", "-"):
            self.take("op", "-")
            sign = -1.0
        total: dict[str, float] = {}
        while True:
            for g, w in self.term().items():
                total[g] = total.get(g, 0.0) + sign * w
            token = self.peek()
            if token is None or token in stop:
                return total
            if token not in (("op", "+"), ("op", "-")):
                raise self.error(f"expected '+' or '-' between terms, got {token[1]!r}")
            sign = 1.0 if self.take("op") == "+" else -1.0


def _expression(text: str, weights: dict[str, float], what: str) -> Expression:
    if not weights or all(w == 0 for w in weights.values()):
        raise ChatflowError(f"{what} {text!r}: names no group loss")
    return Expression(text.strip(), tuple(weights.items()))


def parse_objective(text: str, groups: list[str]) -> Expression:
    """The objective (an expression to minimise) from its text."""
    if not text or not text.strip():
        raise ChatflowError("--objective: give the loss to minimise in the mixture's group names, e.g. "
                            f"'mean({', '.join(groups[:2])})'")
    parser = _Parser(text, groups, "--objective")
    weights = parser.expression()
    return _expression(text, weights, "--objective")


def parse_constraint(text: str, groups: list[str]) -> Constraint:
    """``EXPRESSION <= reference [+ MARGIN]`` or ``EXPRESSION <= NUMBER``."""
    parser = _Parser(text, groups, "--constraint")
    weights = parser.expression(stop=(("op", "<="),))
    parser.take("op", "<=")
    relative = parser.peek() == ("name", "reference")
    if relative:
        parser.take("name")
        bound = 0.0
        if parser.peek() is not None:
            sign = parser.take("op")
            if sign not in "+-":
                raise parser.error(f"expected '+ MARGIN' after 'reference', got {sign!r}")
            bound = float(parser.take("number")) * (1 if sign == "+" else -1)
    else:
        sign = -1.0 if parser.peek() == ("op", "-") else 1.0
        if sign < 0:
            parser.take("op")
        bound = sign * float(parser.take("number"))
    if parser.peek() is not None:
        raise parser.error(f"unexpected {parser.peek()[1]!r} after the bound")
    if not math.isfinite(bound):
        raise parser.error("the bound must be finite")
    return Constraint(text.strip(), _expression(text.split("<=")[0], weights, "--constraint"), bound, relative)
