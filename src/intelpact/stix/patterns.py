"""A fast path for STIX 2.1 patterns that stix2patterns accepts.

Checking an indicator's pattern with stix2patterns means running its ANTLR parser,
about 0.5 ms a pattern, which bounds ingest of indicators. :func:`accepted_pattern_data`
recognises the common STIX 2.1 patterns with a hand-written tokenizer and a
recursive-descent parser, about 30 times faster, and answers in one of two ways:

- the pattern's inspection data, exactly as stix2patterns' ``InspectionListener``
  computes it, when the pattern is certainly accepted by stix2patterns' v2.1
  ``run_validator`` (the parse, the hash check, the duplicate-qualifier check and
  the square-bracket check);
- ``None``, "don't know", for everything else.

It is conservative by design: it never rejects. Whatever it does not fully
understand (a comment, whitespace other than space, tab, CR and LF, a character no
token starts with, a surrogate in a string, an incomplete literal, a construct
outside the grammar, a hash the library would refuse, a repeated qualifier, an index
the library's inspection raises on, very deep nesting) gets ``None``, and the caller
runs the library, which gives the verdict and the message exactly as without this
module. So every rejection still comes from stix2patterns; only
acceptances are made faster, and an acceptance here must be one the library gives.
That holds by construction, step by step:

1. **Tokens.** The tokenizer implements the v2.1 lexer rules
   (``stix2patterns/v21/grammars/STIXPatternLexer.py``, from ``STIXPattern.g4``)
   for the tokens it produces, with ANTLR's rule: the longest match wins, then
   the earliest rule (keywords before identifiers, ``true``/``false`` before
   both). Where the lexer would produce any other token (``QUOTE``, ``PLUS``,
   ``MINUS``, ``DIVIDE``, ``POWER_OP``, ``InvalidCharacter``) or skip anything but
   space, tab, CR and LF (a comment, other whitespace), it gives up.
2. **Grammar.** The parser accepts the sentences of the v2.1 grammar, with its
   left-recursive rules written as loops: ``observationExpressions`` (FOLLOWEDBY),
   ``observationExpressionOr``/``And``, ``observationExpression`` (``[...]``,
   ``(...)``, qualifiers), ``comparisonExpression``/``And``, all nine ``propTest``
   forms, ``objectPath`` and ``setLiteral``. It builds the inspection data in the
   order ``InspectionListener`` would (its exits come in source order).
   stix2patterns raises on two things the grammar allows, an index ``[-1]`` (in the
   listener) and an index right after ``hashes`` (in ``verify_object``): those are
   left to the library.
3. **Checks after the parse**, as ``run_validator`` makes them: the hash check is
   the library's own ``object_validator.verify_object`` on the same data; the
   duplicate-qualifier rule of ``ValidationListener`` (no two qualifiers of one type
   directly on a ``[...]``; on a parenthesised group they are not checked) gives
   ``None`` where it would fail; ``brackets_check`` cannot fail, because an accepted
   pattern is ``(``, ``[`` and the four whitespace characters (all ``str.isspace``)
   up to its first ``[``.
4. **Limits.** stix2patterns walks its parse tree recursively, so a long enough
   chain of operators, qualifiers or path steps, or deep enough nesting, makes it
   raise ``RecursionError`` where this parser would succeed. Patterns with more than
   :data:`MAX_LINKS` chain links or :data:`MAX_NESTING` levels of brackets and
   parentheses are left to the library.

tests/stix/test_patterns.py checks each step against stix2patterns: the tokens
against the ANTLR lexer's, the data against ``Pattern(...).inspect()``, and that
nothing accepted here is rejected there, on the corpus patterns, thousands of
mutations of them and generated patterns. docs/validation.md has the details.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, NamedTuple

from stix2patterns.inspector import INDEX_STAR  # type: ignore[import-untyped]
from stix2patterns.v21.object_validator import verify_object  # type: ignore[import-untyped]

__all__ = ["MAX_LINKS", "MAX_NESTING", "PatternData", "accepted_pattern_data"]

MAX_LINKS: Final = 256
"""Most operators, qualifiers and path steps in a pattern the fast path accepts."""
MAX_NESTING: Final = 16
"""Deepest nesting of ``[...]`` and ``(...)`` the fast path accepts."""

Comparison = tuple[list[object], str, str]
"""(object path, operator, literal text), as stix2patterns' inspection records it.

The path holds property names (``str``), indexes (``int``) and stix2patterns'
``INDEX_STAR`` for ``[*]``."""


class PatternData(NamedTuple):
    """The fields of stix2patterns' ``_PatternData`` (equal to it as a tuple)."""

    comparisons: dict[str, list[Comparison]]
    observation_ops: set[str]
    qualifiers: set[str]


class _Unknown(Exception):
    """The pattern is outside what the fast path decides: leave it to stix2patterns."""


# --- tokens ------------------------------------------------------------------------------------
# Kinds are the lexer's symbolic token names, so the tests can compare token streams.

_KEYWORDS: Final = {word: word for word in (
    "AND", "OR", "NOT", "FOLLOWEDBY", "LIKE", "MATCHES", "ISSUPERSET", "ISSUBSET", "EXISTS",
    "LAST", "IN", "START", "STOP", "SECONDS", "WITHIN", "REPEATS", "TIMES")}
_KEYWORDS.update(true="BoolLiteral", false="BoolLiteral")  # BoolLiteral is the earlier rule
_SYMBOLS: Final = {
    "=": "EQ", "==": "EQ", "!=": "NEQ", "<>": "NEQ", "<": "LT", "<=": "LE", ">": "GT",
    ">=": "GE", ":": "COLON", ".": "DOT", ",": "COMMA", "(": "LPAREN", ")": "RPAREN",
    "[": "LBRACK", "]": "RBRACK", "*": "ASTERISK"}

# One alternative per token class, tried in this order at each position, after skipping
# whitespace. Where two alternatives can both match, the earlier one is the longer match,
# as in the lexer: a complete t'...', h'...' or b'...' literal is longer than the
# identifier 't', 'h' or 'b'; a float is longer than the integer it starts with and than
# '.'; two-character operators come before one-character ones. A malformed t'...', h'...'
# or b'...' lexes as the lexer lexes it: the identifier, then (perhaps) a string. The
# string's [^'\\] leaves out surrogates, which the tests cannot show the library's runtime
# to treat alike; 'bad' is any character that starts no token produced here.
#
# Every match starts where the last one ended, so finditer never searches: 'end' takes the
# whitespace after the last token (left unmatched, it made finditer retry from each of its
# characters, backtracking over the rest: quadratic), and 'int' takes a whole run of
# digits (a run the lexer splits, '007' into '0', '0', '7', is given up, in _tokens;
# matched '0' by '0', the float rule rescanned the rest of the run from each: quadratic).
_B64: Final = "[A-Za-z0-9+/]"
_TOKEN: Final = re.compile(rf"""
    [ \t\r\n]*
    (?:
      (?P<TimestampLiteral>t'[0-9]{{4}}-(?:0[1-9]|1[012])-(?:0[1-9]|[12][0-9]|3[01])
        T(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?Z')
    | (?P<HexLiteral>h'(?:[0-9A-Fa-f]{{2}})*')
    | (?P<BinaryLiteral>b'(?:{_B64}{{4}})*(?:{_B64}{{4}}|{_B64}{{3}}=|{_B64}{{2}}==)')
    | (?P<word>[A-Za-z_][A-Za-z0-9_-]*)
    | (?P<StringLiteral>'(?:[^'\\\ud800-\udfff]|\\['\\])*')
    | (?P<float>[+-]?[0-9]*\.[0-9]+)
    | (?P<int>[+-]?[0-9]+)
    | (?P<symbol>==|!=|<>|<=|>=|[=<>:.,()\[\]*])
    | (?P<bad>[^ \t\r\n])
    | (?P<end>\Z)
    )""", re.VERBOSE)


def _tokens(pattern: str) -> tuple[list[str], list[str]]:
    """The kinds and texts of the lexer's tokens for ``pattern``, or :class:`_Unknown`."""
    kinds: list[str] = []
    texts: list[str] = []
    for match in _TOKEN.finditer(pattern):
        group = match.lastgroup or "bad"  # every alternative is a named group
        if group == "end":
            break
        text = match[group]
        if group == "bad" or (group == "int" and text.lstrip("+-").startswith("0")
                              and len(text) > 1 + (text[0] in "+-")):
            raise _Unknown  # digits after a leading 0: the lexer makes several tokens
        if group == "word":
            kind = _KEYWORDS.get(text) or ("IdentifierWithHyphen" if "-" in text
                                           else "IdentifierWithoutHyphen")
        elif group == "symbol":
            kind = _SYMBOLS[text]
        elif group == "int":
            kind = "IntNegLiteral" if text[0] == "-" else "IntPosLiteral"
        elif group == "float":
            kind = "FloatNegLiteral" if text[0] == "-" else "FloatPosLiteral"
        else:
            kind = group
        kinds.append(kind)
        texts.append(text)
    return kinds, texts


# --- the grammar -------------------------------------------------------------------------------

_EQUALITY: Final = frozenset({"EQ", "NEQ"})
_ORDER: Final = frozenset({"GT", "LT", "GE", "LE"})
_STRING_OPS: Final = frozenset({"LIKE", "MATCHES", "ISSUBSET", "ISSUPERSET"})
_ORDERABLE: Final = frozenset({"IntPosLiteral", "IntNegLiteral", "FloatPosLiteral",
                               "FloatNegLiteral", "StringLiteral", "BinaryLiteral",
                               "HexLiteral", "TimestampLiteral"})
_PRIMITIVE: Final = _ORDERABLE | {"BoolLiteral"}
_OBJECT_TYPE: Final = frozenset({"IdentifierWithoutHyphen", "IdentifierWithHyphen"})
_PROPERTY: Final = frozenset({"IdentifierWithoutHyphen", "StringLiteral"})
# The grammar allows [-1] too, but InspectionListener raises on it (it reads IntPosLiteral).
_INDEX: Final = frozenset({"IntPosLiteral", "ASTERISK"})
_SECONDS: Final = frozenset({"IntPosLiteral", "FloatPosLiteral"})
_QUALIFIERS: Final = frozenset({"START", "WITHIN", "REPEATS"})


def _unquote(text: str) -> str:
    # stix2patterns.inspector._string_literal_to_string, replacement for replacement
    return text[1:-1].replace("\\'", "'").replace("\\\\", "\\")


def _name(text: str) -> str:
    """A property name in a path: an identifier as it is, a string literal unquoted."""
    return _unquote(text) if text[0] == "'" else text


class _Parser:
    """Recursive descent over the tokens, one method per grammar rule.

    Any departure from the grammar, or from what the fast path decides, raises
    :class:`_Unknown`. The inspection data is built in source order, which is the
    order of InspectionListener's exits.
    """

    def __init__(self, kinds: list[str], texts: list[str]) -> None:
        self.kinds = [*kinds, "EOF"]  # the grammar's EOF, so that peek() needs no bound check
        self.texts = texts
        self.pos = 0
        self.links = 0
        self.nesting = 0
        self.data = PatternData({}, set(), set())

    def peek(self) -> str:
        return self.kinds[self.pos]

    def take(self, kind: str) -> str:
        """The text of the next token, which must be a ``kind``."""
        if self.peek() != kind:
            raise _Unknown
        self.pos += 1
        return self.texts[self.pos - 1]

    def take_any(self, kinds: frozenset[str]) -> str:
        """The text of the next token, which must be one of ``kinds``."""
        if self.peek() not in kinds:
            raise _Unknown
        self.pos += 1
        return self.texts[self.pos - 1]

    def link(self) -> None:
        """Count one link of a chain that stix2patterns' parse tree nests (see MAX_LINKS)."""
        self.links += 1
        if self.links > MAX_LINKS:
            raise _Unknown

    def nest(self, close: str, inside: Callable[[], None]) -> None:
        """``[ inside ]`` or ``( inside )``; the opening token is next."""
        self.pos += 1
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise _Unknown
        inside()
        self.take(close)
        self.nesting -= 1

    def chain(self, operator: str, operand: Callable[[], None], *, record: bool) -> None:
        """``operand (operator operand)*``: a left-recursive binary rule, as a loop."""
        operand()
        while self.peek() == operator:
            self.pos += 1
            self.link()
            if record:  # InspectionListener records the observation operators used
                self.data.observation_ops.add(operator)
            operand()

    def pattern(self) -> PatternData:
        self.observations()
        if self.peek() != "EOF":
            raise _Unknown
        return self.data

    def observations(self) -> None:
        self.chain("FOLLOWEDBY", self.observation_or, record=True)

    def observation_or(self) -> None:
        self.chain("OR", self.observation_and, record=True)

    def observation_and(self) -> None:
        self.chain("AND", self.observation, record=True)

    def observation(self) -> None:
        simple = self.peek() == "LBRACK"
        if simple:
            self.nest("RBRACK", self.comparisons)
        elif self.peek() == "LPAREN":
            self.nest("RPAREN", self.observations)
        else:
            raise _Unknown
        seen: set[str] = set()
        while (kind := self.peek()) in _QUALIFIERS:
            # ValidationListener: the qualifiers directly on a [...] are of distinct types
            if simple and kind in seen:
                raise _Unknown
            seen.add(kind)
            self.link()
            self.data.qualifiers.add(self.qualifier())

    def qualifier(self) -> str:
        """One qualifier, written as InspectionListener writes it."""
        keyword = self.take_any(_QUALIFIERS)
        if keyword == "START":
            start = self.take("TimestampLiteral")
            self.take("STOP")
            return f"START {start} STOP {self.take('TimestampLiteral')}"
        if keyword == "WITHIN":
            seconds = self.take_any(_SECONDS)
            self.take("SECONDS")
            return f"WITHIN {seconds} SECONDS"
        times = self.take("IntPosLiteral")
        self.take("TIMES")
        return f"REPEATS {times} TIMES"

    def comparisons(self) -> None:
        self.chain("OR", self.comparison_and, record=False)

    def comparison_and(self) -> None:
        self.chain("AND", self.prop_test, record=False)

    def prop_test(self) -> None:
        kind = self.peek()
        if kind == "LPAREN":
            self.nest("RPAREN", self.comparisons)
            return
        if kind in ("NOT", "EXISTS"):  # NOT? EXISTS objectPath: InspectionListener skips it
            if kind == "NOT":
                self.pos += 1
            self.take("EXISTS")
            self.object_path()
            return
        obj_type, path = self.object_path()
        negated = self.peek() == "NOT"
        if negated:
            self.pos += 1
        operator = self.peek()
        if operator in _EQUALITY:
            op, value = self.take_any(_EQUALITY), self.take_any(_PRIMITIVE)
        elif operator in _ORDER:
            op, value = self.take_any(_ORDER), self.take_any(_ORDERABLE)
        elif operator == "IN":
            op, value = self.take("IN"), self.set_literal()
        elif operator in _STRING_OPS:
            op, value = self.take_any(_STRING_OPS), self.take("StringLiteral")
        else:
            raise _Unknown
        self.data.comparisons.setdefault(obj_type, []).append(
            (path, "NOT " + op if negated else op, value))

    def object_path(self) -> tuple[str, list[object]]:
        obj_type = self.take_any(_OBJECT_TYPE)
        self.take("COLON")
        path: list[object] = [_name(self.take_any(_PROPERTY))]
        while (kind := self.peek()) == "DOT" or kind == "LBRACK":
            self.pos += 1
            self.link()
            if kind == "DOT":
                path.append(_name(self.take_any(_PROPERTY)))
            else:
                index = self.take_any(_INDEX)
                path.append(INDEX_STAR if index == "*" else int(index))
                self.take("RBRACK")
        return obj_type, path

    def set_literal(self) -> str:
        """The set's text as the parse tree's ``getText()`` gives it: its tokens, joined."""
        parts = [self.take("LPAREN")]
        if self.peek() != "RPAREN":
            parts.append(self.take_any(_PRIMITIVE))
            while self.peek() == "COMMA":
                parts += (self.take("COMMA"), self.take_any(_PRIMITIVE))
        parts.append(self.take("RPAREN"))
        return "".join(parts)


def _hash_check_can_run(data: PatternData) -> bool:
    """Whether ``verify_object`` returns a list: on a ``hashes`` path ending in an
    index it raises (``int`` has no ``upper``); the library path reports that."""
    return not any("hashes" in path and isinstance(path[-1], int)
                   for comparisons in data.comparisons.values() for path, _, _ in comparisons)


def accepted_pattern_data(pattern: str) -> PatternData | None:
    """The inspection data of a STIX 2.1 ``pattern`` stix2patterns certainly accepts.

    ``None`` means "don't know": the pattern may be valid or not, and only
    stix2patterns can say (see the module docstring for why this is conservative).
    """
    try:
        data = _Parser(*_tokens(pattern)).pattern()
    except _Unknown:
        return None
    if not _hash_check_can_run(data) or verify_object(data):
        return None
    return data
