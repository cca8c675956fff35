"""Compile-time checks of CRD ``x-kubernetes-validations`` rules, as kube-apiserver makes them.

The real API server compiles every rule when a CRD is created or updated, against a CEL type
built from the schema, and refuses the CRD (422) when a rule does not parse, names a field the
type does not have, calls a function with no overload for its argument types, or does not
evaluate to a bool. The type follows the apiserver's ``SchemaDeclType``:

- ``integer`` int, ``number`` double, ``boolean`` bool, ``string`` string (``format: byte``
  bytes, ``duration`` a duration, ``date``/``date-time`` a timestamp);
- ``x-kubernetes-int-or-string`` dyn;
- ``object`` with ``additionalProperties`` a map of string to the values' type; otherwise an
  object with exactly the declared ``properties`` (``x-kubernetes-preserve-unknown-fields`` adds
  nothing: unknown fields cannot be read from CEL);
- ``array`` a list of the items' type;
- a schema without ``type`` has no CEL type: a property with such a schema is dropped from its
  object (``undefined field``), and a map or list of such values is dropped too;
- the resource root (and ``x-kubernetes-embedded-resource`` objects) also have ``apiVersion``,
  ``kind`` and ``metadata`` with only ``name`` and ``generateName``.

Messages are cel-go's (``ERROR: <input>:1:5: undefined field 'x'`` and the source line with a
caret). Only what this module knows is refused: a function it does not model is accepted with an
unknown type (never an error), and names of the Kubernetes CEL libraries are known. Not checked:
the cost estimate ("estimated rule cost exceeds budget"), ``messageExpression``, reserved words.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

Schema = dict[str, Any]


# --- types -----------------------------------------------------------------------------------


@dataclass(eq=False)
class Type:
    kind: str  # int uint double string bool bytes null duration timestamp type dyn unknown error
    #            list map object optional
    name: str = ""  # object types: the apiserver's name (selfType123.spec.x)
    elem: Type | None = None  # list element, map value, optional value
    key: Type | None = None  # map key
    fields: dict[str, Type] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.kind == "list":
            return f"list({self.elem})"
        if self.kind == "map":
            return f"map({self.key}, {self.elem})"
        if self.kind == "optional":
            return f"optional_type({self.elem})"
        if self.kind == "object":
            return self.name
        return {
            "duration": "google.protobuf.Duration",
            "timestamp": "google.protobuf.Timestamp",
            "unknown": "dyn",
            "error": "*error*",
        }.get(self.kind, self.kind)

    @property
    def loose(self) -> bool:
        """dyn, a type this module does not model, or an error already reported."""
        return self.kind in ("dyn", "unknown", "error")


def _t(kind: str) -> Type:
    return Type(kind)


INT, UINT, DOUBLE, STRING, BOOL, BYTES, NULL = (_t(k) for k in ("int", "uint", "double", "string", "bool",
                                                                "bytes", "null"))
DYN, UNKNOWN, ERROR, TYPE = _t("dyn"), _t("unknown"), _t("error"), _t("type")
NUMERIC = ("int", "uint", "double")

_RESERVED = {
    "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if",
    "import", "let", "loop", "package", "namespace", "return", "var", "void", "while",
}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def escape(name: str) -> str | None:
    """A property name as CEL sees it (the apiserver's Escape), None when CEL cannot name it."""
    if name in _RESERVED:
        return f"__{name}__"
    out = name.replace("__", "__underscores__").replace(".", "__dot__").replace("-", "__dash__")
    out = out.replace("/", "__slash__")
    return out if _IDENT.match(out) else None


def _object_meta(schema: Schema) -> Schema:
    props = dict(schema.get("properties") or {})
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    props["metadata"] = {"type": "object", "properties": {"name": {"type": "string"},
                                                          "generateName": {"type": "string"}}}
    return {**schema, "type": "object", "properties": props}


def schema_type(schema: Schema | None, name: str, resource_root: bool = False) -> Type | None:
    """The CEL type of values of this schema; None where the apiserver has none (no ``type``)."""
    if not isinstance(schema, dict):
        return None
    if schema.get("x-kubernetes-int-or-string"):
        return DYN
    if resource_root:
        schema = _object_meta(schema)
    kind = schema.get("type")
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            value = schema_type(extra, f"{name}.@elem", bool(extra.get("x-kubernetes-embedded-resource")))
            return Type("map", key=STRING, elem=value) if value is not None else None
        fields: dict[str, Type] = {}
        for prop, sub in (schema.get("properties") or {}).items():
            cel_name = escape(prop)
            if cel_name is None or not isinstance(sub, dict):
                continue
            sub_type = schema_type(sub, f"{name}.{cel_name}", bool(sub.get("x-kubernetes-embedded-resource")))
            if sub_type is not None:
                fields[cel_name] = sub_type
        return Type("object", name=name, fields=fields)
    if kind == "array":
        items = schema.get("items")
        item_type = schema_type(items, f"{name}.@idx", bool(isinstance(items, dict)
                                                             and items.get("x-kubernetes-embedded-resource")))
        return Type("list", elem=item_type) if item_type is not None else None
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "byte":
            return BYTES
        if fmt == "duration":
            return _t("duration")
        if fmt in ("date", "date-time"):
            return _t("timestamp")
        return STRING
    return {"integer": INT, "number": DOUBLE, "boolean": BOOL}.get(str(kind))


def assignable(a: Type, b: Type) -> bool:
    if a.loose or b.loose:
        return True
    if a.kind == "null" or b.kind == "null":
        other = b if a.kind == "null" else a
        return other.kind in ("null", "object", "timestamp", "duration", "list", "map", "optional")
    if a.kind != b.kind:
        return False
    if a.kind in ("list", "optional"):
        return assignable(a.elem or UNKNOWN, b.elem or UNKNOWN)
    if a.kind == "map":
        keys = assignable(a.key or UNKNOWN, b.key or UNKNOWN)
        return keys and assignable(a.elem or UNKNOWN, b.elem or UNKNOWN)
    if a.kind == "object":
        return a.name == b.name
    return True


# --- lexer -------------------------------------------------------------------------------------

EXPECTING_EXPR = ("{'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, "
                  "STRING, BYTES, IDENTIFIER}")

_LEX = re.compile(
    r"""
      (?P<space>\s+|//[^\n]*)
    | (?P<num>0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\.\d+(?:[eE][+-]?\d+)?)
             |\d+[uU]?)
    | (?P<str>(?:[rR][bB]?|[bB][rR]?)?(?:\"\"\"(?:[^\\]|\\.)*?\"\"\"|'''(?:[^\\]|\\.)*?'''
             |"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'))
    | (?P<op>&&|\|\||==|!=|<=|>=|[-+*/%<>!?:.,()\[\]{}])
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass
class Tok:
    kind: str  # num str op ident end
    text: str
    pos: int


class CelCompileError(Exception):
    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos, self.message = pos, message


def _lex(text: str, errors: list[tuple[int, str]]) -> list[Tok]:
    """The tokens; characters that start none are skipped, as ANTLR does, with an error each."""
    tokens: list[Tok] = []
    pos = 0
    while pos < len(text):
        m = _LEX.match(text, pos)
        if not m:
            bad = text[pos : pos + 2] if text[pos] in "=&|" else text[pos]
            errors.append((pos, f"Syntax error: token recognition error at: '{bad}'"))
            pos += len(bad)
            continue
        if m.lastgroup != "space":
            tokens.append(Tok(str(m.lastgroup), m.group(), pos))
        pos = m.end()
    tokens.append(Tok("end", "<EOF>", len(text)))
    return tokens


# --- checker -----------------------------------------------------------------------------------

_SIZED = ("string", "bytes", "list", "map")
_CONVERSIONS = {"int": INT, "uint": UINT, "double": DOUBLE, "string": STRING, "bool": BOOL, "bytes": BYTES,
                "duration": _t("duration"), "timestamp": _t("timestamp"), "dyn": DYN, "type": TYPE}
_STRING_PREDICATES = ("startsWith", "endsWith", "contains", "matches")
_MACROS = ("all", "exists", "exists_one", "map", "filter")
#: functions of CEL and of the Kubernetes CEL libraries; those not modelled here type as unknown
KNOWN_FUNCTIONS = {
    *_CONVERSIONS, "size", *_STRING_PREDICATES, *_MACROS,
    "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getFullYear", "getHours",
    "getMilliseconds", "getMinutes", "getMonth", "getSeconds",
    "charAt", "indexOf", "lastIndexOf", "lowerAscii", "upperAscii", "replace", "split", "substring", "trim",
    "join", "format", "quote", "reverse", "strings.quote",
    "isSorted", "sum", "min", "max", "slice", "flatten", "distinct", "sort", "sortBy", "first", "last",
    "lists.range", "find", "findAll",
    "url", "isURL", "getScheme", "getHost", "getHostname", "getPort", "getEscapedPath", "getQuery",
    "quantity", "isQuantity", "sign", "isGreaterThan", "isLessThan", "compareTo", "asApproximateFloat",
    "asInteger", "isInteger", "add", "sub",
    "ip", "isIP", "cidr", "isCIDR", "family", "isUnspecified", "isLoopback", "isLinkLocalMulticast",
    "isLinkLocalUnicast", "isGlobalUnicast", "ip.isCanonical", "containsIP", "containsCIDR", "prefixLength",
    "masked", "semver", "isSemver", "major", "minor", "patch",
    "format.named", "validate", "dns1123Label", "dns1123Subdomain", "dns1035Label", "qualifiedName",
    "dns1123LabelPrefix", "dns1123SubdomainPrefix", "dns1035LabelPrefix", "labelValue", "uri", "uuid",
    "byte", "date", "datetime",
    "sets.contains", "sets.equivalent", "sets.intersects", "base64.decode", "base64.encode",
    "math.greatest", "math.least", "math.ceil", "math.floor", "math.round", "math.trunc", "math.abs",
    "math.sign", "math.isNaN", "math.isInf", "math.isFinite", "math.bitAnd", "math.bitOr", "math.bitXor",
    "math.bitNot", "math.bitShiftLeft", "math.bitShiftRight", "math.sqrt",
    "optional.of", "optional.ofNonZeroValue", "optional.none", "hasValue", "value", "orValue", "or",
    "optMap", "optFlatMap", "transformList", "transformMap", "transformMapEntry", "cel.bind", "cel.block",
    "cel.index", "cel.iterVar", "cel.accuVar",
}
_TYPE_NAMES = ("int", "uint", "double", "string", "bool", "bytes", "list", "map", "null_type", "type", "dyn")


@dataclass
class Expr:
    type: Type
    pos: int
    kind: str = "other"  # ident select call index other
    error: tuple[int, str] | None = None  # the error this node itself reported (has() moves it)


class _Checker:
    def __init__(self, text: str, self_type: Type) -> None:
        self.lex_errors: list[tuple[int, str]] = []
        self.tokens = _lex(text, self.lex_errors)
        self.i = 0
        self.errors: list[tuple[int, str]] = []
        self.scopes: list[dict[str, Type]] = [{"self": self_type, "oldSelf": self_type}]

    # tokens
    def peek(self, ahead: int = 0) -> Tok:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def at(self, *ops: str) -> bool:
        tok = self.peek()
        return tok.kind == "op" and tok.text in ops

    def at_in(self) -> bool:
        return (self.peek().kind, self.peek().text) == ("ident", "in")

    def take(self) -> Tok:
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, op: str) -> Tok:
        if not self.at(op):
            tok = self.peek()
            raise CelCompileError(tok.pos, f"Syntax error: missing '{op}' at '{tok.text}'")
        return self.take()

    def starts_expr(self, tok: Tok) -> bool:
        return tok.kind in ("num", "str", "ident") or (tok.kind == "op" and tok.text in "[{(.-!")

    def no_expr(self) -> CelCompileError:
        tok = self.peek()
        how = "extraneous" if tok.kind != "end" and self.starts_expr(self.peek(1)) else "mismatched"
        return CelCompileError(tok.pos, f"Syntax error: {how} input '{tok.text}' expecting {EXPECTING_EXPR}")

    def fail(self, pos: int, message: str) -> tuple[int, str]:
        error = (pos, message)
        self.errors.append(error)
        return error

    def overload(self, name: str, pos: int, args: list[Type], target: Type | None = None) -> Expr:
        shown = ", ".join(str(a) for a in args)
        applied = f"{target}.({shown})" if target is not None else f"({shown})"
        message = f"found no matching overload for '{name}' applied to '{applied}'"
        return Expr(ERROR, pos, error=self.fail(pos, message))

    # grammar
    def check(self) -> Type:
        result = self.expr()
        if self.peek().kind != "end":
            tok = self.peek()
            raise CelCompileError(tok.pos, f"Syntax error: extraneous input '{tok.text}' expecting <EOF>")
        return result.type

    def expr(self) -> Expr:
        cond = self.logic("||", self.logic_and)
        if not self.at("?"):
            return cond
        pos = self.take().pos
        yes = self.logic("||", self.logic_and)
        self.expect(":")
        no = self.expr()
        if not (cond.type.loose or cond.type.kind == "bool") or not assignable(yes.type, no.type):
            return self.overload("_?_:_", pos, [cond.type, yes.type, no.type])
        return Expr(no.type if yes.type.loose or yes.type.kind == "null" else yes.type, pos)

    def logic_and(self) -> Expr:
        return self.logic("&&", self.relation)

    def logic(self, op: str, sub: Any) -> Expr:
        left: Expr = sub()
        while self.at(op):
            pos = self.take().pos
            right: Expr = sub()
            if any(not (t.loose or t.kind == "bool") for t in (left.type, right.type)):
                left = self.overload(f"_{op}_", pos, [left.type, right.type])
            else:
                left = Expr(BOOL, pos)
        return left

    def relation(self) -> Expr:
        left = self.calc(0)
        while self.at("==", "!=", "<", "<=", ">", ">=") or self.at_in():
            tok = self.take()
            right = self.calc(0)
            left = self.relate(tok.text, tok.pos, left.type, right.type)
        return left

    def relate(self, op: str, pos: int, a: Type, b: Type) -> Expr:
        if op == "in":
            ok = b.loose or a.kind == "error" or (
                b.kind == "list" and assignable(a, b.elem or UNKNOWN)) or (
                b.kind == "map" and assignable(a, b.key or UNKNOWN))
            return Expr(BOOL, pos) if ok else self.overload("@in", pos, [a, b])
        if op in ("==", "!="):
            return Expr(BOOL, pos) if assignable(a, b) else self.overload(f"_{op}_", pos, [a, b])
        ordered = ("int", "uint", "double", "string", "bytes", "bool", "timestamp", "duration")
        ok = a.loose or b.loose or (a.kind in NUMERIC and b.kind in NUMERIC)
        ok = ok or (a.kind == b.kind and a.kind in ordered)
        return Expr(BOOL, pos) if ok else self.overload(f"_{op}_", pos, [a, b])

    _LEVELS = (("+", "-"), ("*", "/", "%"))

    def calc(self, level: int) -> Expr:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.calc(level + 1)
        while self.at(*self._LEVELS[level]):
            tok = self.take()
            right = self.calc(level + 1)
            left = self.arith(tok.text, tok.pos, left.type, right.type)
        return left

    def arith(self, op: str, pos: int, a: Type, b: Type) -> Expr:
        if a.loose or b.loose:
            known = b if a.loose else a
            return Expr(known if op != "-" or known.kind != "timestamp" else UNKNOWN, pos)
        pair = (a.kind, b.kind)
        result: Type | None = None
        if a.kind == b.kind and a.kind in NUMERIC and (op != "%" or a.kind != "double"):
            result = a
        elif op == "+" and a.kind == b.kind and a.kind in ("string", "bytes", "list", "duration"):
            same = assignable(a.elem or UNKNOWN, b.elem or UNKNOWN)
            result = a if a.kind != "list" else Type("list", elem=a.elem if same else DYN)
        elif op == "+" and pair in (("timestamp", "duration"), ("duration", "timestamp")):
            result = _t("timestamp")
        elif op == "-" and pair in (("timestamp", "timestamp"), ("duration", "duration")):
            result = _t("duration")
        elif op == "-" and pair == ("timestamp", "duration"):
            result = _t("timestamp")
        if result is None:
            return self.overload(f"_{op}_", pos, [a, b])
        return Expr(result, pos)

    def unary(self) -> Expr:
        if self.at("!", "-"):
            tok = self.take()
            inner = self.unary()
            t = inner.type
            ok = t.loose or (t.kind == "bool" if tok.text == "!" else t.kind in ("int", "double"))
            return Expr(t, tok.pos) if ok else self.overload(f"{tok.text}_", tok.pos, [t])
        return self.member()

    def member(self) -> Expr:
        node = self.primary()
        while self.at(".", "["):
            tok = self.take()
            if tok.text == "[":
                optional = self.at("?") and bool(self.take())
                index = self.expr()
                self.expect("]")
                node = self.index(node, index, tok.pos, optional)
                continue
            optional = self.at("?") and bool(self.take())
            name = self.take()
            if name.kind != "ident":
                message = f"Syntax error: mismatched input '{name.text}' expecting IDENTIFIER"
                raise CelCompileError(name.pos, message)
            if self.at("(") and not optional:
                node = self.call(name.text, node, self.peek().pos)
            else:
                node = self.select(node, name.text, tok.pos, optional)
        return node

    def select(self, target: Expr, name: str, pos: int, optional: bool = False) -> Expr:
        t = target.type
        if t.kind == "optional":
            t = t.elem or UNKNOWN
        if t.loose:
            result: Type = UNKNOWN if t.kind != "error" else ERROR
        elif t.kind == "object":
            if name not in t.fields:
                return Expr(ERROR, pos, "select", self.fail(pos, f"undefined field '{name}'"))
            result = t.fields[name]
        elif t.kind == "map":
            result = t.elem or UNKNOWN
        else:
            return Expr(ERROR, pos, "select", self.fail(pos, f"type '{t}' does not support field selection"))
        return Expr(Type("optional", elem=result) if optional else result, pos, "select")

    def index(self, target: Expr, index: Expr, pos: int, optional: bool) -> Expr:
        t, i = target.type, index.type
        if t.kind == "optional":
            t = t.elem or UNKNOWN
        result: Type | None = None
        if t.loose:
            result = UNKNOWN
        elif (t.kind == "list" and (i.loose or i.kind in ("int", "uint"))) or (
            t.kind == "map" and assignable(i, t.key or UNKNOWN)
        ):
            result = t.elem
        if result is None:
            return self.overload("_[?_]" if optional else "_[_]", pos, [t, i])
        return Expr(Type("optional", elem=result) if optional else result, pos, "index")

    def arguments(self) -> list[Expr]:
        self.expect("(")
        args: list[Expr] = []
        while not self.at(")"):
            if not self.starts_expr(self.peek()):
                raise self.no_expr()
            args.append(self.expr())
            if not self.at(")"):
                self.expect(",")
        self.take()
        return args

    def comprehension(self, name: str, target: Expr, pos: int) -> Expr:
        """all/exists/exists_one/map/filter (and their two-variable forms): bind, then check."""
        self.expect("(")
        names: list[str] = []
        while self.peek().kind == "ident" and self.peek(1).kind == "op" and self.peek(1).text == ",":
            names.append(self.take().text)
            self.take()
        t = target.type
        if t.kind == "list":
            first, second = (t.elem or UNKNOWN), (t.elem or UNKNOWN)
            kinds = [INT, second] if len(names) >= 2 else [first]
        elif t.kind == "map":
            kinds = [t.key or UNKNOWN, t.elem or UNKNOWN] if len(names) >= 2 else [t.key or UNKNOWN]
        else:
            kinds = [UNKNOWN, UNKNOWN]
        self.scopes.append(dict(zip(names, kinds, strict=False)))
        try:
            rest: list[Expr] = []
            while not self.at(")"):
                rest.append(self.expr())
                if not self.at(")"):
                    self.expect(",")
            self.take()
        finally:
            self.scopes.pop()
        if name == "map" and rest:
            return Expr(Type("list", elem=rest[-1].type), pos, "call")
        if name == "filter":
            return Expr(t if t.kind == "list" else UNKNOWN, pos, "call")
        return Expr(BOOL if name in ("all", "exists", "exists_one") else UNKNOWN, pos, "call")

    def call(self, name: str, target: Expr | None, pos: int) -> Expr:
        if target is not None and name in _MACROS:
            return self.comprehension(name, target, pos)
        args = self.arguments()
        if name not in KNOWN_FUNCTIONS:
            undeclared = f"undeclared reference to '{name}' (in container '')"
            return Expr(ERROR, pos, "call", self.fail(pos, undeclared))
        types = [a.type for a in args]
        everything = ([target.type] if target is not None else []) + types
        if name == "size" and len(everything) == 1:
            t = everything[0]
            if t.loose or t.kind in _SIZED:
                return Expr(INT, pos, "call")
            return self.overload("size", pos, types, target.type if target is not None else None)
        if name in _STRING_PREDICATES and len(everything) == 2:
            if all(t.loose or t.kind == "string" for t in everything):
                return Expr(BOOL, pos, "call")
            return self.overload(name, pos, types, target.type if target is not None else None)
        if name in _CONVERSIONS and target is None and len(args) == 1:
            return Expr(_CONVERSIONS[name], pos, "call")
        if target is not None and target.type.kind == "optional" and name in ("orValue", "value"):
            return Expr(target.type.elem or UNKNOWN, pos, "call")
        if name.startswith(("is", "sets.")) or name in ("hasValue", "containsIP", "containsCIDR"):
            return Expr(BOOL, pos, "call")
        return Expr(UNKNOWN, pos, "call")

    def has(self, pos: int) -> Expr:
        self.expect("(")
        if not self.starts_expr(self.peek()):
            raise self.no_expr()
        arg = self.expr()
        self.expect(")")
        if arg.kind != "select":  # macros expand while parsing: a syntax-level error
            raise CelCompileError(arg.pos, "invalid argument to has() macro")
        if arg.error is not None:  # cel-go reports a presence test at the has() call
            self.errors.remove(arg.error)
            self.fail(pos, arg.error[1])
        return Expr(BOOL, pos, "call")

    def lookup(self, name: str) -> Type | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return TYPE if name in _TYPE_NAMES else None

    def primary(self) -> Expr:
        tok = self.peek()
        if tok.kind == "num":
            self.take()
            text = tok.text.lower()
            floating = "." in text or ("e" in text and "x" not in text)
            kind = UINT if text.endswith("u") else DOUBLE if floating else INT
            return Expr(kind, tok.pos)
        if tok.kind == "str":
            self.take()
            return Expr(BYTES if tok.text[:2].lower() in ("b'", 'b"', "br", "rb") else STRING, tok.pos)
        if tok.kind == "ident":
            self.take()
            if tok.text in ("true", "false"):
                return Expr(BOOL, tok.pos)
            if tok.text == "null":
                return Expr(NULL, tok.pos)
            if self.at("(") and tok.text == "has":
                return self.has(self.peek().pos)
            if self.at("("):
                return self.call(tok.text, None, self.peek().pos)
            found = self.lookup(tok.text)
            if found is None and self.at(".") and self.peek(1).kind == "ident":
                # a namespaced function: base64.decode(...), optional.of(...), sets.contains(...)
                qualified = f"{tok.text}.{self.peek(1).text}"
                if self.peek(2).kind == "op" and self.peek(2).text == "(":
                    self.take(), self.take()
                    return self.call(qualified, None, self.peek().pos)
            if found is None:
                return Expr(ERROR, tok.pos, "ident",
                            self.fail(tok.pos, f"undeclared reference to '{tok.text}' (in container '')"))
            return Expr(found, tok.pos, "ident")
        if tok.kind == "op" and tok.text == "(":
            self.take()
            if not self.starts_expr(self.peek()):
                raise self.no_expr()
            inner = self.expr()
            self.expect(")")
            return inner
        if tok.kind == "op" and tok.text in ("[", "{"):
            return self.literal(self.take())
        raise self.no_expr()

    def literal(self, open_tok: Tok) -> Expr:
        close = "]" if open_tok.text == "[" else "}"
        keys: list[Type] = []
        values: list[Type] = []
        while not self.at(close):
            if self.at("?"):
                self.take()
            if open_tok.text == "{":
                keys.append(self.expr().type)
                self.expect(":")
                if self.at("?"):
                    self.take()
            values.append(self.expr().type)
            if not self.at(close):
                self.expect(",")
        self.take()

        def common(types: list[Type]) -> Type:
            if not types:
                return UNKNOWN
            first = types[0]
            return first if all(assignable(first, t) and t.kind == first.kind for t in types) else DYN

        if open_tok.text == "[":
            return Expr(Type("list", elem=common(values)), open_tok.pos)
        return Expr(Type("map", key=common(keys), elem=common(values)), open_tok.pos)


# --- reports -----------------------------------------------------------------------------------


def _location(text: str, pos: int) -> tuple[int, int, str]:
    line_no = text.count("\n", 0, pos) + 1
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return line_no, pos - start + 1, text[start : end if end >= 0 else len(text)]


def format_errors(text: str, errors: list[tuple[int, str]]) -> str:
    """cel-go's report: ``ERROR: <input>:L:C: message``, the line, a caret under column C."""
    parts = []
    for pos, message in errors:
        line_no, col, line = _location(text, pos)
        parts.append(f"ERROR: <input>:{line_no}:{col}: {message}\n | {line}\n | {'.' * (col - 1)}^")
    return "\n".join(parts)


def compile_rule(rule: str, self_type: Type) -> str | None:
    """None when the rule compiles to a bool; else the apiserver's detail ("compilation failed: ...")."""
    checker = _Checker(rule, self_type)
    try:
        result = checker.check()
    except CelCompileError as e:
        return "compilation failed: " + format_errors(rule, [*checker.lex_errors, (e.pos, e.message)])
    if checker.lex_errors:
        return "compilation failed: " + format_errors(rule, checker.lex_errors)
    if checker.errors:
        return "compilation failed: " + format_errors(rule, sorted(checker.errors))
    if result.kind not in ("bool", "unknown", "error"):
        return "cel expression must evaluate to a bool"
    return None


def go_rule(rule: dict[str, Any]) -> str:
    """A ValidationRule as the apiserver prints it in the message (Go's json.Marshal)."""
    body = {
        "Rule": rule.get("rule", ""),
        "Message": rule.get("message", ""),
        "MessageExpression": rule.get("messageExpression", ""),
        "Reason": rule.get("reason"),
        "FieldPath": rule.get("fieldPath", ""),
        "OptionalOldSelf": rule.get("optionalOldSelf"),
    }
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def check_schema(root: Schema, path: str) -> list[tuple[str, str]]:
    """(field, message) for every rule of a CRD version's schema that does not compile."""
    problems: list[tuple[str, str]] = []
    type_name = f"selfType{time.time_ns() % 1_000_000_000}"

    def walk(schema: Any, where: str, is_root: bool) -> None:
        if not isinstance(schema, dict):
            return
        rules = schema.get("x-kubernetes-validations") or []
        if rules:
            embedded = is_root or bool(schema.get("x-kubernetes-embedded-resource"))
            self_type = schema_type(schema, type_name, embedded)
            for n, rule in enumerate(rules):
                if self_type is None or not isinstance(rule, dict):
                    continue
                detail = compile_rule(str(rule.get("rule", "")), self_type)
                if detail is not None:
                    problems.append((f"{where}.x-kubernetes-validations[{n}].rule",
                                     f"Invalid value: {go_rule(rule)}: {detail}"))
        for name, sub in (schema.get("properties") or {}).items():
            walk(sub, f"{where}.properties[{name}]", False)
        if isinstance(schema.get("items"), dict):
            walk(schema["items"], f"{where}.items", False)
        if isinstance(schema.get("additionalProperties"), dict):
            walk(schema["additionalProperties"], f"{where}.additionalProperties", False)

    walk(root, path, True)
    return problems


def check_crd(crd: dict[str, Any]) -> list[tuple[str, str]]:
    """Every rule of every version; paths as the apiserver names them (one schema for all versions
    is reported under spec.validation, as the internal API holds it)."""
    versions = (crd.get("spec") or {}).get("versions") or []
    schemas = [((v.get("schema") or {}).get("openAPIV3Schema")) for v in versions]
    if schemas and all(s == schemas[0] for s in schemas):
        one = schemas[0]
        return check_schema(one, "spec.validation.openAPIV3Schema") if isinstance(one, dict) else []
    problems: list[tuple[str, str]] = []
    for n, s in enumerate(schemas):
        if isinstance(s, dict):
            problems += check_schema(s, f"spec.versions[{n}].schema.openAPIV3Schema")
    return problems
