"""A tiny evaluator for the subset of CEL used in CRD ``x-kubernetes-validations`` rules.

Supported: literals (int, double, string, bool, null, lists), ``self``/``oldSelf``, field selection
``a.b``, indexing ``a[0]``/``a['k']``, ``has(a.b)``, ``size(x)``/``x.size()``,
``startsWith``/``endsWith``/``contains``/``matches``, ``!``, unary ``-``, ``* / %``, ``+ -``,
comparisons, ``in``, ``&&``, ``||`` and ``c ? a : b``. Anything else (macros such as ``all`` and
``exists``, ``self.x.y.orValue()``...) raises :class:`CelSyntaxError`, so the caller can record the
rule as unevaluated instead of silently passing it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Env = tuple[Any, Any]  # (self, oldSelf)
Node = Callable[[Env], Any]


class CelSyntaxError(ValueError):
    pass


class CelEvalError(ValueError):
    pass


_TOKEN = re.compile(
    r"""
    \s*(?:
      (?P<num>\d+\.\d+|\d+)(?P<unsigned>[uU])?
    | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<op>&&|\|\||==|!=|<=|>=|[-+*/%<>!?:.,()\[\]])
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)

_METHODS: dict[str, Callable[..., Any]] = {
    "startsWith": lambda s, p: s.startswith(p),
    "endsWith": lambda s, p: s.endswith(p),
    "contains": lambda s, p: p in s,
    "matches": lambda s, p: re.search(p, s) is not None,
    "size": lambda s: len(s),
}


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise CelSyntaxError(f"unexpected character at {pos}: {text[pos : pos + 10]!r}")
        pos = m.end()
        if m.group("num"):
            raw = m.group("num")
            tokens.append(("lit", float(raw) if "." in raw else int(raw)))
        elif m.group("str"):
            tokens.append(("lit", bytes(m.group("str")[1:-1], "utf-8").decode("unicode_escape")))
        elif m.group("op"):
            tokens.append(("op", m.group("op")))
        else:
            word = m.group("ident")
            if word in ("true", "false"):
                tokens.append(("lit", word == "true"))
            elif word == "null":
                tokens.append(("lit", None))
            elif word == "in":
                tokens.append(("op", "in"))
            else:
                tokens.append(("ident", word))
    tokens.append(("end", None))
    return tokens


def _select(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        if key not in obj:
            raise CelEvalError(f"no such key: {key}")
        return obj[key]
    raise CelEvalError(f"no such key: {key}")


def _compare(op: str, a: Any, b: Any) -> bool:
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b))
    if op in ("==", "!="):
        same = a == b if numeric or type(a) is type(b) else False
        return same if op == "==" else not same
    if not numeric and type(a) is not type(b):
        raise CelEvalError(f"no such overload: {type(a).__name__} {op} {type(b).__name__}")
    try:
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    except TypeError as e:
        raise CelEvalError(f"no such overload for {op}") from e


def _arith(op: str, a: Any, b: Any) -> Any:
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a // b if isinstance(a, int) and isinstance(b, int) else a / b
        return a % b
    except (TypeError, ZeroDivisionError) as e:
        raise CelEvalError(f"no such overload or division by zero for {op}") from e


@dataclass
class Program:
    node: Node
    uses_old_self: bool

    def evaluate(self, self_value: Any, old_value: Any = None) -> Any:
        return self.node((self_value, old_value))


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.uses_old_self = False

    def peek(self) -> tuple[str, Any]:
        return self.tokens[self.pos]

    def take(self, value: str | None = None) -> tuple[str, Any]:
        tok = self.tokens[self.pos]
        if value is not None and tok[1] != value:
            raise CelSyntaxError(f"expected {value!r}, got {tok[1]!r}")
        self.pos += 1
        return tok

    def at(self, *ops: str) -> bool:
        kind, value = self.peek()
        return kind == "op" and value in ops

    def parse(self) -> Program:
        node = self.ternary()
        if self.peek()[0] != "end":
            raise CelSyntaxError(f"unexpected token {self.peek()[1]!r}")
        return Program(node, self.uses_old_self)

    def ternary(self) -> Node:
        cond = self.logic_or()
        if not self.at("?"):
            return cond
        self.take("?")
        yes = self.ternary()
        self.take(":")
        no = self.ternary()
        return lambda env: yes(env) if cond(env) is True else no(env)

    def _logic(self, op: str, sub: Callable[[], Node], short: bool) -> Node:
        node = sub()
        while self.at(op):
            self.take()
            left, right = node, sub()

            def combined(env: Env, left: Node = left, right: Node = right) -> Any:
                # CEL's && and || are commutative with errors: false && error is false.
                results: list[Any] = []
                error: CelEvalError | None = None
                for part in (left, right):
                    try:
                        value = part(env)
                    except CelEvalError as e:
                        error = e
                        continue
                    if value is short:
                        return short
                    results.append(value)
                if error is not None:
                    raise error
                if any(not isinstance(v, bool) for v in results):
                    raise CelEvalError(f"no such overload for {op}")
                return not short

            node = combined
        return node

    def logic_or(self) -> Node:
        return self._logic("||", self.logic_and, True)

    def logic_and(self) -> Node:
        return self._logic("&&", self.relation, False)

    def relation(self) -> Node:
        left = self.additive()
        if self.at("==", "!=", "<", "<=", ">", ">=", "in"):
            op = self.take()[1]
            right = self.additive()
            if op == "in":
                return lambda env: left(env) in right(env)
            return lambda env: _compare(op, left(env), right(env))
        return left

    def _binary(self, ops: tuple[str, ...], sub: Callable[[], Node]) -> Node:
        node = sub()
        while self.at(*ops):
            op = self.take()[1]
            node = functools.partial(lambda env, o, a, b: _arith(o, a(env), b(env)), o=op, a=node, b=sub())
        return node

    def additive(self) -> Node:
        return self._binary(("+", "-"), self.multiplicative)

    def multiplicative(self) -> Node:
        return self._binary(("*", "/", "%"), self.unary)

    def unary(self) -> Node:
        if self.at("!"):
            self.take()
            inner = self.unary()

            def negate(env: Env) -> bool:
                value = inner(env)
                if not isinstance(value, bool):
                    raise CelEvalError("no such overload for !")
                return not value

            return negate
        if self.at("-"):
            self.take()
            inner = self.unary()
            return lambda env: -inner(env)
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while self.at(".", "["):
            if self.take()[1] == "[":
                index = self.ternary()
                self.take("]")
                node = functools.partial(lambda env, a, i: self._index(a(env), i(env)), a=node, i=index)
                continue
            kind, name = self.take()
            if kind != "ident":
                raise CelSyntaxError(f"expected a field name after '.', got {name!r}")
            if self.at("("):
                if name not in _METHODS:
                    raise CelSyntaxError(f"unsupported function or macro: {name}()")
                args = self.arguments()
                fn = _METHODS[name]
                node = functools.partial(
                    lambda env, t, f, a: self._call(f, [t(env)] + [x(env) for x in a]), t=node, f=fn, a=args
                )
            else:
                node = functools.partial(lambda env, t, k: _select(t(env), k), t=node, k=name)
        return node

    @staticmethod
    def _index(container: Any, index: Any) -> Any:
        try:
            return container[index]
        except (KeyError, IndexError, TypeError) as e:
            raise CelEvalError(f"no such key or index: {index!r}") from e

    @staticmethod
    def _call(fn: Callable[..., Any], args: list[Any]) -> Any:
        try:
            return fn(*args)
        except (TypeError, AttributeError, re.error) as e:
            raise CelEvalError(f"no matching overload: {e}") from e

    def arguments(self) -> list[Node]:
        self.take("(")
        args: list[Node] = []
        while not self.at(")"):
            args.append(self.ternary())
            if not self.at(")"):
                self.take(",")
        self.take(")")
        return args

    def primary(self) -> Node:
        kind, value = self.take()
        if kind == "lit":
            return lambda env: value
        if kind == "op" and value == "(":
            node = self.ternary()
            self.take(")")
            return node
        if kind == "op" and value == "[":
            items: list[Node] = []
            while not self.at("]"):
                items.append(self.ternary())
                if not self.at("]"):
                    self.take(",")
            self.take("]")
            return lambda env: [i(env) for i in items]
        if kind == "ident" and value == "self":
            return lambda env: env[0]
        if kind == "ident" and value == "oldSelf":
            self.uses_old_self = True
            return lambda env: env[1]
        if kind == "ident" and value == "has":
            return self._has()
        if kind == "ident" and value == "size":
            args = self.arguments()
            if len(args) != 1:
                raise CelSyntaxError("size() takes one argument")
            return lambda env: self._call(len, [args[0](env)])
        raise CelSyntaxError(f"unsupported token: {value!r}")

    def _has(self) -> Node:
        # has() is a macro: its argument must be a field selection, tested for presence.
        self.take("(")
        start = self.pos
        depth = 0
        while not (self.at(")") and depth == 0):
            if self.at("(", "["):
                depth += 1
            elif self.at(")", "]"):
                depth -= 1
            if self.peek()[0] == "end":
                raise CelSyntaxError("unterminated has()")
            self.pos += 1
        end = self.pos
        self.take(")")
        if end - start < 3 or self.tokens[end - 2] != ("op", ".") or self.tokens[end - 1][0] != "ident":
            raise CelSyntaxError("has() needs a field selection like has(self.field)")
        field = self.tokens[end - 1][1]
        sub = _Parser.__new__(_Parser)
        sub.tokens, sub.pos, sub.uses_old_self = [*self.tokens[start : end - 2], ("end", None)], 0, False
        target = sub.ternary()
        self.uses_old_self |= sub.uses_old_self
        return lambda env: isinstance(obj := target(env), dict) and field in obj


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> Program:
    """Compile a rule; raises CelSyntaxError for anything outside the supported subset."""
    return _Parser(text).parse()
