"""The safe condition language of rule packs: parsed and compiled to closures, never eval'd.

Rule text is data written by regulators; it must not be able to run code. This module
tokenises and parses an expression into a small tree and compiles the tree into nested
Python closures over a fixed set of operators, so an expression can only read values
from its context and compare or combine them. Grammar and null semantics are documented
in docs/rule-packs.md.

Nor can it exhaust time or memory: an expression is refused (ExpressionError, at load time)
beyond `MAX_CHARS` characters, `MAX_TOKENS` tokens, `MAX_NESTING` levels of parentheses,
`not`, unary minus and calls, a tree deeper than `MAX_DEPTH` (long chains like `a + b + ...`),
or a number literal longer than `MAX_NUMBER_CHARS`. The tokeniser is linear in the text.
The largest shipped condition has 131 characters, 18 tokens and depth 6.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Scope = Mapping[str, Any]
Compiled = Callable[[Scope], Any]

MAX_CHARS = 4096
MAX_TOKENS = 1024
MAX_NESTING = 32
MAX_DEPTH = 64
MAX_NUMBER_CHARS = 40


class ExpressionError(ValueError):
    """An expression that does not parse or names something that does not exist."""

    def __init__(self, text: str, position: int, message: str) -> None:
        start = max(0, position - 60)  # a long expression is shown around the column, not whole
        shown = ("…" if start else "") + text[start:position + 60] + ("…" if len(text) > position + 60 else "")
        pointer = " " * (position - start + (1 if start else 0)) + "^"
        super().__init__(f"{message} at column {position + 1}\n  {shown}\n  {pointer}")
        self.text = text
        self.position = position
        self.reason = message


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<string>'[^'\\]*'|"[^"\\]*")
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
      | (?P<op><=|>=|==|!=|<|>|\+|-|\*|/|\(|\)|\[|\]|,)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}
_FUNCTIONS = {"min", "max", "abs", "present"}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number, string, name, op, keyword, end
    value: Any
    position: int


def _tokenise(text: str) -> list[_Token]:
    if len(text) > MAX_CHARS:
        raise ExpressionError(text, 0, f"an expression of {len(text)} characters (at most {MAX_CHARS})")
    tokens: list[_Token] = []
    position = 0
    end = len(text.rstrip())
    while position < end:
        if len(tokens) >= MAX_TOKENS:
            raise ExpressionError(text, position, f"more than {MAX_TOKENS} tokens")
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            start = position + (len(text[position:]) - len(text[position:].lstrip()))
            raise ExpressionError(text, start, f"unexpected character {text[start]!r}")
        kind = match.lastgroup
        assert kind is not None
        raw = match.group(kind)
        start = match.start(kind)
        if kind == "number":
            if len(raw) > MAX_NUMBER_CHARS:
                raise ExpressionError(text, start, f"a number of {len(raw)} characters (at most {MAX_NUMBER_CHARS})")
            tokens.append(_Token("number", float(raw) if any(c in raw for c in ".eE") else int(raw), start))
        elif kind == "string":
            tokens.append(_Token("string", raw[1:-1], start))
        elif kind == "name" and raw in _KEYWORDS:
            tokens.append(_Token("keyword", raw, start))
        else:
            tokens.append(_Token(kind, raw, start))
        position = match.end()
    tokens.append(_Token("end", None, len(text)))
    return tokens


# The tree: tuples whose first element says what the node is.
Node = tuple[Any, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenise(text)
        self.index = 0
        self.nesting = 0

    def deeper(self, token: _Token) -> None:
        """One more level of nesting (a parenthesis, `not`, unary minus, a call), bounded."""
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise ExpressionError(self.text, token.position, f"nested more than {MAX_NESTING} levels deep")

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept(self, kind: str, value: Any) -> bool:
        token = self.peek()
        if token.kind == kind and token.value == value:
            self.index += 1
            return True
        return False

    def expect(self, kind: str, value: Any) -> None:
        if not self.accept(kind, value):
            token = self.peek()
            found = "the end" if token.kind == "end" else repr(token.value)
            raise ExpressionError(self.text, token.position, f"expected {value!r}, found {found}")

    def parse(self) -> Node:
        node = self.or_()
        token = self.peek()
        if token.kind != "end":
            raise ExpressionError(self.text, token.position, f"unexpected {token.value!r}")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.accept("keyword", "or"):
            node = ("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.accept("keyword", "and"):
            node = ("and", node, self.not_())
        return node

    def not_(self) -> Node:
        token = self.peek()
        if self.accept("keyword", "not"):
            self.deeper(token)
            node = ("not", self.not_())
            self.nesting -= 1
            return node
        return self.comparison()

    def comparison(self) -> Node:
        node = self.additive()
        token = self.peek()
        if token.kind == "op" and token.value in ("<", "<=", ">", ">=", "==", "!="):
            self.take()
            return ("compare", token.value, node, self.additive())
        if token.kind == "keyword" and token.value == "in":
            self.take()
            return ("in", node, self.list_literal())
        if token.kind == "keyword" and token.value == "not":
            following = self.tokens[self.index + 1]
            if following.kind == "keyword" and following.value == "in":
                self.index += 2
                return ("not", ("in", node, self.list_literal()))
        return node

    def list_literal(self) -> Node:
        """A list of literals, or a name whose value is a list (e.g. a list parameter `params.causes`)."""
        start = self.peek()
        if start.kind == "name":
            self.take()
            return ("name", tuple(start.value.split(".")), start.position)
        self.expect("op", "[")
        items: list[Any] = []
        if not self.accept("op", "]"):
            while True:
                token = self.take()
                if token.kind in ("number", "string"):
                    items.append(token.value)
                elif token.kind == "keyword" and token.value in ("true", "false", "null"):
                    items.append({"true": True, "false": False, "null": None}[token.value])
                else:
                    raise ExpressionError(self.text, token.position, "a list holds only literals")
                if self.accept("op", "]"):
                    break
                self.expect("op", ",")
        if not items:
            raise ExpressionError(self.text, start.position, "an empty list never matches")
        return ("list", tuple(items))

    def additive(self) -> Node:
        node = self.multiplicative()
        while True:
            token = self.peek()
            if token.kind == "op" and token.value in ("+", "-"):
                self.take()
                node = ("arith", token.value, node, self.multiplicative())
            else:
                return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while True:
            token = self.peek()
            if token.kind == "op" and token.value in ("*", "/"):
                self.take()
                node = ("arith", token.value, node, self.unary())
            else:
                return node

    def unary(self) -> Node:
        token = self.peek()
        if self.accept("op", "-"):
            self.deeper(token)
            node = ("neg", self.unary())
            self.nesting -= 1
            return node
        return self.atom()

    def atom(self) -> Node:
        token = self.take()
        if token.kind in ("number", "string"):
            return ("const", token.value)
        if token.kind == "keyword" and token.value in ("true", "false", "null"):
            return ("const", {"true": True, "false": False, "null": None}[token.value])
        if token.kind == "op" and token.value == "(":
            self.deeper(token)
            node = self.or_()
            self.expect("op", ")")
            self.nesting -= 1
            return node
        if token.kind == "name":
            if self.accept("op", "("):
                if token.value not in _FUNCTIONS:
                    raise ExpressionError(self.text, token.position, f"unknown function {token.value!r}")
                args: list[Node] = []
                self.deeper(token)
                if not self.accept("op", ")"):
                    while True:
                        args.append(self.or_())
                        if self.accept("op", ")"):
                            break
                        self.expect("op", ",")
                self.nesting -= 1
                return ("call", token.value, tuple(args), token.position)
            return ("name", tuple(token.value.split(".")), token.position)
        found = "the end" if token.kind == "end" else repr(token.value)
        raise ExpressionError(self.text, token.position, f"expected a value, found {found}")


def parse(text: str) -> Node:
    """Parse an expression into its tree (raises ExpressionError with the column), bounded
    in size, nesting and depth (see the module docstring)."""
    tree = _Parser(text).parse()
    depth = _depth(tree)
    if depth > MAX_DEPTH:
        raise ExpressionError(text, 0, f"an expression tree {depth} levels deep (at most {MAX_DEPTH}: "
                                       "split long chains of + - * / and or into parts)")
    return tree


def _children(node: Node) -> tuple[Node, ...]:
    kind = node[0]
    if kind in ("const", "list", "name"):
        return ()
    if kind == "call":
        return tuple(node[2])
    if kind in ("compare", "arith"):
        return (node[2], node[3])
    return tuple(part for part in node[1:] if isinstance(part, tuple) and part and part[0] in _NODE_KINDS)


def _depth(tree: Node) -> int:
    """The depth of a tree, without recursion (a chain of 1,000 `+` is 1,000 deep)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in _children(node))
    return deepest


def names(node: Node) -> list[tuple[str, ...]]:
    """Every dotted name an expression reads, in order of appearance."""
    if node[0] == "name":
        return [node[1]]
    return [name for child in _children(node) for name in names(child)]


_NODE_KINDS = {"or", "and", "not", "compare", "in", "list", "arith", "neg", "const", "name", "call"}


def holds_upward(node: Node, name: tuple[str, ...]) -> bool:
    """Whether a condition that holds stays true when `name` grows (an upper limit): `name`
    appears only as `name > x`, `name >= x` (or `x < name`, `x <= name`) inside and/or."""
    kind = node[0]
    if kind in ("and", "or"):
        return holds_upward(node[1], name) and holds_upward(node[2], name)
    if name not in names(node):
        return True
    if kind == "compare":
        op, left, right = node[1], node[2], node[3]
        if left[:2] == ("name", name) and op in (">", ">=") and name not in names(right):
            return True
        if right[:2] == ("name", name) and op in ("<", "<=") and name not in names(left):
            return True
    return False


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_PLAIN_NUMBERS = frozenset({int, float})  # JSON's numbers (a bool is not one; subclasses take the long way)
_ORDERS: dict[str, Callable[[Any, Any], Any]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                                 ">=": operator.ge}


def _ordered(order: Callable[[Any, Any], Any], left: Any, right: Any) -> bool:
    """`<`, `<=`, `>`, `>=` (`order`): false unless both sides are numbers, or both are not
    (two strings compare; a value that cannot be ordered with the other gives false)."""
    if type(left) in _PLAIN_NUMBERS and type(right) in _PLAIN_NUMBERS:  # the common case, at once
        return order(left, right)  # type: ignore[no-any-return]
    if left is None or right is None:
        return False
    if _number(left) != _number(right):
        return False
    try:
        return bool(order(left, right))
    except TypeError:
        return False


def _arith(op: str, left: Any, right: Any) -> Any:
    result = _arith_unbounded(op, left, right)
    return result if result is None or math.isfinite(result) else None


def _arith_unbounded(op: str, left: Any, right: Any) -> Any:
    """`left op right` on numbers (None otherwise, or for a division by zero); a result past the
    float range is ±inf or NaN, and a non-finite operand carries on (inf - inf is NaN)."""
    if not (_number(left) and _number(right)):
        return None
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if right == 0:
        return None
    return left / right


def _call(name: str, args: list[Any]) -> Any:
    if name == "present":
        return args[0] is not None
    if name == "abs":
        return abs(args[0]) if _number(args[0]) else None
    if not args or not all(_number(a) for a in args):
        return None
    return min(args) if name == "min" else max(args)


def compile_expression(text: str, known_roots: frozenset[str], *, unbounded: bool = False) -> Compiled:
    """Compile `text` into a closure over a scope mapping root names to values.

    `known_roots` are the names a scope provides (e.g. data, enterprise, judged, limit);
    any other name is an error here, at rule-pack load time, not at event time.
    Arithmetic whose result leaves the float range gives None (no number), as a missing figure
    does; `unbounded` gives it as ±inf or NaN instead, for a rule's measure and limit, which the
    judge must tell from a missing figure (a data gap, `figure_out_of_range`).
    """
    tree = parse(text)
    return _compile(tree, text, known_roots, unbounded)


def _compile(node: Node, text: str, roots: frozenset[str], unbounded: bool) -> Compiled:
    kind = node[0]
    if kind == "const":
        value = node[1]
        return lambda scope: value
    if kind == "name":
        path, position = node[1], node[2]
        root = path[0]
        if root not in roots:
            raise ExpressionError(text, position, f"unknown name {root!r} (known: {', '.join(sorted(roots))})")
        rest = path[1:]
        if not rest:
            return lambda scope: scope.get(root)

        if len(rest) == 1:  # `enterprise.scale`: most names, without the loop
            (key,) = rest

            def lookup_one(scope: Scope) -> Any:
                value = scope.get(root)
                if type(value) is dict or isinstance(value, Mapping):  # a dict first: the ABC check is slow
                    return value.get(key)
                return None

            return lookup_one

        def lookup(scope: Scope) -> Any:
            value = scope.get(root)
            for key in rest:
                if type(value) is not dict and not isinstance(value, Mapping):  # a dict first: the ABC check is slow
                    return None
                value = value.get(key)
            return value

        return lookup
    if kind == "or":
        left, right = _compile(node[1], text, roots, unbounded), _compile(node[2], text, roots, unbounded)
        return lambda scope: bool(left(scope)) or bool(right(scope))
    if kind == "and":
        left, right = _compile(node[1], text, roots, unbounded), _compile(node[2], text, roots, unbounded)
        return lambda scope: bool(left(scope)) and bool(right(scope))
    if kind == "not":
        inner = _compile(node[1], text, roots, unbounded)
        return lambda scope: not inner(scope)
    if kind == "compare":  # the operator chosen here, once: each kind of comparison its own closure
        op = node[1]
        left, right = _compile(node[2], text, roots, unbounded), _compile(node[3], text, roots, unbounded)
        if op in ("==", "!="):
            if node[3][0] == "const":  # `enterprise.scale == 'above'`: the constant held, not called
                constant = node[3][1]
                if op == "==":
                    return lambda scope: bool(left(scope) == constant)
                return lambda scope: bool(left(scope) != constant)
            if op == "==":
                return lambda scope: bool(left(scope) == right(scope))
            return lambda scope: bool(left(scope) != right(scope))
        order = _ORDERS[op]
        return lambda scope: _ordered(order, left(scope), right(scope))
    if kind == "in":
        inner = _compile(node[1], text, roots, unbounded)
        if node[2][0] == "name":  # a list named: a value that is not a list matches nothing
            named = _compile(node[2], text, roots, unbounded)

            def member(scope: Scope) -> bool:
                value = named(scope)
                return isinstance(value, (list, tuple)) and inner(scope) in value

            return member
        options = node[2][1]
        return lambda scope: inner(scope) in options
    if kind == "arith":
        op = node[1]
        left, right = _compile(node[2], text, roots, unbounded), _compile(node[3], text, roots, unbounded)
        arith = _arith_unbounded if unbounded else _arith
        return lambda scope: arith(op, left(scope), right(scope))
    if kind == "neg":
        inner = _compile(node[1], text, roots, unbounded)
        negate = _arith_unbounded if unbounded else _arith
        return lambda scope: negate("*", -1, inner(scope))
    if kind == "call":
        name, arg_nodes, position = node[1], node[2], node[3]
        expected = 1 if name in ("abs", "present") else None
        if expected is not None and len(arg_nodes) != expected:
            raise ExpressionError(text, position, f"{name}() takes exactly one argument")
        if expected is None and not arg_nodes:
            raise ExpressionError(text, position, f"{name}() needs at least one argument")
        args = [_compile(a, text, roots, unbounded) for a in arg_nodes]
        return lambda scope: _call(name, [a(scope) for a in args])
    raise AssertionError(f"unknown node {kind}")  # pragma: no cover - parser emits only the kinds above
