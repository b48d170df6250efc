"""Fast validation of STIX 2.1 objects for the ingest path.

The OASIS STIX 2.1 JSON schemas that ship inside the installed ``stix2-validator``
package are compiled to Python with ``fastjsonschema`` (once per object type, on
first use), and the MUST-level checks that stix2-validator runs in Python are
re-implemented here, so that :func:`validate_object` accepts and rejects what
``stix2validator.validate_instance`` does with its default options, about 75
times faster (bench/validate.py). The deliberate differences (where this module is
stricter) are listed in docs/validation.md and asserted in
tests/stix/test_validate.py. Indicator patterns get stix2patterns' verdict; the
patterns it certainly accepts are recognised without its ANTLR parser, by the
conservative fast path in :mod:`intelpact.stix.patterns`.

Public API: :class:`StixValidationError`, :func:`validate_object`,
:func:`validate_bundle`. Everything else is internal.
"""

from __future__ import annotations

import calendar
import functools
import importlib.util
import json
import os
import re
import reprlib
import uuid
from collections.abc import Callable, Collection, Iterable
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import fastjsonschema
import idna
from antlr4 import (  # type: ignore[import-untyped]
    CommonTokenStream,
    InputStream,
    ParseTreeWalker,
)
from cpe import CPE  # type: ignore[import-untyped]
from rfc3986_validator import validate_rfc3986  # type: ignore[import-untyped]
from stix2patterns.exceptions import STIXPatternErrorListener  # type: ignore[import-untyped]
from stix2patterns.v20.validator import (  # type: ignore[import-untyped]
    run_validator as run_v20_validator,
)
from stix2patterns.v21 import object_validator  # type: ignore[import-untyped]
from stix2patterns.v21.grammars.STIXPatternLexer import (  # type: ignore[import-untyped]
    STIXPatternLexer,
)
from stix2patterns.v21.grammars.STIXPatternParser import (  # type: ignore[import-untyped]
    STIXPatternParser,
)
from stix2patterns.v21.inspector import InspectionListener  # type: ignore[import-untyped]
from stix2patterns.v21.pattern import Pattern  # type: ignore[import-untyped]
from stix2patterns.v21.validator import (  # type: ignore[import-untyped]
    DuplicateQualifierTypeError,
    ValidationListener,
)
from stix2patterns.validator import (  # type: ignore[import-untyped]
    brackets_check,
)

from ..errors import IntelpactError
from ..maritime.extension import AIS_EXTENSION_ID, MISSING, ais_problem
from .patterns import accepted_pattern_data

__all__ = ["StixValidationError", "validate_bundle", "validate_object"]

ObjectResult = tuple[Any, "StixValidationError | None"]


class StixValidationError(IntelpactError):
    """A STIX object (or the bundle around it) breaks a STIX 2.1 rule.

    ``reason`` is one line naming the property and what is wrong with it;
    ``object_id`` is the object's ``id`` when it has a usable one.
    """

    def __init__(self, object_id: str | None, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"{object_id}: {reason}" if object_id else reason, hint=hint)
        self.object_id = object_id
        self.reason = reason


# --- the data we read from the installed stix2-validator --------------------------------------

def _stix2validator_dir() -> Path:
    # find_spec on a top-level package locates it without importing it; importing
    # stix2validator costs ~1.4 s (jsonschema's format checkers), and we only need its files.
    spec = importlib.util.find_spec("stix2validator")
    if spec is None or spec.origin is None:
        raise ImportError("stix2-validator is not installed; intelpact needs its STIX 2.1 schemas")
    return Path(spec.origin).parent


def _load_enums(path: Path) -> ModuleType:
    # v21/enums.py is plain data (lists, dicts and two CSV readers); load it on its own.
    spec = importlib.util.spec_from_file_location("_intelpact_stix2validator_v21_enums", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_PKG: Final = _stix2validator_dir()
_SCHEMA_DIR: Final = _PKG / "schemas-2.1" / "schemas"
_SCHEMA_URI: Final = "http://raw.githubusercontent.com/oasis-open/cti-stix2-json-schemas/stix2.1/schemas/"
_E: Final = _load_enums(_PKG / "v21" / "enums.py")
_SCHEMA_FILES: Final = {p.stem: p for p in sorted(_SCHEMA_DIR.rglob("*.json"))}

_SDO_TYPES: Final = frozenset(_E.TYPES)
_SCO_TYPES: Final = frozenset(_E.OBSERVABLE_TYPES)
_RESERVED: Final = frozenset(_E.RESERVED_PROPERTIES)
_LANG_CODES: Final = frozenset(_E.LANG_CODES)
_SOFTWARE_LANG_CODES: Final = frozenset(_E.SOFTWARE_LANG_CODES)
_MEDIA_TYPES: Final = frozenset(_E.media_types())
_CHAR_SETS: Final = frozenset(_E.char_sets())

# Equivalent, linear-time forms of schema regexes. The originals nest quantifiers
# (``([a-z][a-z0-9]*)+``), which backtracks exponentially: a 40-character ``type`` hangs
# stix2-validator. ``$$`` inside a character class is rewritten because fastjsonschema
# turns every unescaped ``$`` into ``\Z``, which is not valid inside ``[...]``.
_PATTERN_REWRITES: Final = {
    "^([a-z][a-z0-9]*)+(-[a-z0-9]+)*\\-?$": "^[a-z][a-z0-9]*(-[a-z0-9]+)*\\-?$",
    "^([a-z][a-z0-9]*)+(-[a-z0-9]+)*\\-ext$": "^[a-z][a-z0-9]*(-[a-z0-9]+)*\\-ext$",
}
_CPE_CLASS_FIX: Final = ('"#$$%', '"#\\$%')
_RESERVED_NOT: Final = {"anyOf": [{"required": [p]} for p in
                                  ("severity", "action", "username", "phone_numbers")]}
_PROPERTIES_REF: Final = [{"$ref": "../common/properties.json"}]
_ANY_VALUE: Final = {"anyOf": [{"type": "array", "minItems": 1}, {"type": "string"},
                               {"type": "integer"}, {"type": "boolean"}, {"type": "number"},
                               {"type": "object"}]}

# properties.json, which the core schemas apply to every top-level property: checked in
# Python instead (see _check_names), with the same regexes.
_NAME_BIN: Final = re.compile(r"^[a-z][a-z0-9_]{0,245}_bin$")
_NAME_HEX: Final = re.compile(r"^[a-z][a-z0-9_]{0,245}_hex$")
_NAME_ANY: Final = re.compile(r"^([a-z][a-z0-9_]{2,249})|id$")
_BINARY: Final = re.compile(
    r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)\Z")
_HEX: Final = re.compile(r"^([a-fA-F0-9]{2})+\Z")
_JSON_TYPES: Final = (str, int, float, Decimal, dict, list, tuple)
_SAFE_INTEGER: Final = 2**53 - 1  # I-JSON's (RFC 7493 section 2.2), and so RFC 8785's
_PLAIN: Final = frozenset({str, int, float, bool, dict})

_TIMESTAMP: Final = re.compile(r"^([0-9]{4})-(0[1-9]|1[012])-(0[1-9]|[12][0-9]|3[01])T"
                               r"([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9]|60)(\.[0-9]+)?Z\Z")
_MAX_TIMESTAMP: Final = len("2016-05-12T08:17:27.123456789Z")  # store.base.parse_timestamp's
_EMAIL: Final = re.compile(r"^[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+\Z")
_SELECTOR_INDEX: Final = re.compile(r"\[(\d+)\]")
_PATTERN_TYPE: Final = re.compile(r"^\-?[a-z0-9]+(-[a-z0-9]+)*\-?\Z")
_PATTERN_PROPERTY: Final = re.compile(r"^[a-z0-9_]{3,250}\Z")
_LANG_PROPERTY: Final = _PATTERN_PROPERTY

_NEW_TYPE_EXTENSIONS: Final = frozenset({"new-sdo", "new-sco", "new-sro"})
_UUID4_UNLESS: Final = {  # SCOs that need a UUIDv4 id unless an ID contributing property is set
    "artifact": ("hashes", "payload_bin"),
    "email-message": ("from_ref", "subject", "body"),
    "user-account": ("account_type", "user_id", "account_login"),
    "windows-registry-key": ("key", "values"),
    "x509-certificate": ("hashes", "serial_number"),
}
_MISSING: Final = object()

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 80
_repr.maxlevel, _repr.maxdict, _repr.maxlist = 2, 4, 4


# an identifier (STIX 2.1 section 2.9) as the OASIS schema's common/identifier.json has
# it, its type at most 250 characters (section 3.1)
_IDENTIFIER: Final = re.compile(
    r"[a-z][a-z0-9-]{1,248}[a-z0-9]--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-5][0-9a-fA-F]{3}-"
    r"[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}")


def is_identifier(value: object) -> bool:
    """Whether ``value`` is a STIX identifier, ``<type>--<UUID>``."""
    return isinstance(value, str) and _IDENTIFIER.fullmatch(value) is not None


def _show(value: object) -> str:
    """A short, single-line rendering of a value for an error message."""
    return _repr.repr(value)


def _fail(oid: str | None, reason: str, hint: str | None = None) -> StixValidationError:
    return StixValidationError(oid, reason, hint=hint)


# --- schema loading and compiling -------------------------------------------------------------

_applied_rewrites: set[str] = set()  # read by the tests: every rewrite must still apply


def _fix_pattern(pattern: str) -> str:
    if pattern in _PATTERN_REWRITES:
        _applied_rewrites.add(pattern)
        return _PATTERN_REWRITES[pattern]
    if _CPE_CLASS_FIX[0] in pattern:
        _applied_rewrites.add("cpe")
        return pattern.replace(*_CPE_CLASS_FIX)
    return pattern


def _rewrite(node: Any) -> Any:
    if isinstance(node, list):
        return [_rewrite(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "pattern" and isinstance(value, str):
            out[key] = _fix_pattern(value)
        elif key == "patternProperties" and isinstance(value, dict):
            out[key] = {_fix_pattern(k): _rewrite(v) for k, v in value.items()}
        elif key == "const" and "enum" not in node:
            # same meaning; fastjsonschema 2.22 cannot compile 'const' without detailed errors
            _applied_rewrites.add("const")
            out["enum"] = [_rewrite(value)]
        else:
            out[key] = _rewrite(value)
    return out


def _take(schema: dict[str, Any], key: str, expected: object, rel: str) -> None:
    # Remove a part we check in Python instead; refuse to start if upstream changed it.
    if schema.get(key) != expected:
        raise ImportError(f"{_SCHEMA_DIR / rel}: '{key}' is not what intelpact expects; "
                          "review src/intelpact/stix/validate.py for this stix2-validator")
    del schema[key]


@functools.cache
def _raw_schema(rel: str) -> dict[str, Any]:
    with open(_SCHEMA_DIR / rel, encoding="utf-8") as f:
        schema: dict[str, Any] = json.load(f)
    return schema


@functools.cache
def _schema(rel: str) -> dict[str, Any]:
    """The schema at ``rel`` with our equivalence-preserving rewrites applied."""
    schema: dict[str, Any] = _rewrite(_raw_schema(rel))
    if rel in ("common/core.json", "common/cyber-observable-core.json"):
        _take(schema, "allOf", _PROPERTIES_REF, rel)  # -> _check_names
        _take(schema, "not", _RESERVED_NOT, rel)  # -> _check_names
        _take(schema["properties"]["type"], "not", {"enum": ["action"]}, rel)  # -> _check_type
    elif rel == "common/properties.json":
        # anyOf of six types, each tried by raising, is the same as one type list
        any_value = schema["patternProperties"]["^([a-z][a-z0-9_]{2,249})|id$"]
        if any_value == _ANY_VALUE:
            any_value.clear()
            any_value.update(type=["array", "boolean", "number", "object", "string"], minItems=1)
    elif rel == "common/bundle.json":
        schema["properties"]["objects"] = {}  # each object is validated on its own
    return schema


def _resolve(uri: str) -> dict[str, Any]:
    if not uri.startswith(_SCHEMA_URI):
        raise ValueError(f"refusing to fetch schema {uri!r}: only the bundled schemas are used")
    return _schema(uri[len(_SCHEMA_URI):])


# external-reference.json's oneOf: a CVE reference, a CAPEC one, or any other source. The
# three exclude each other (source_name is required by each, and is "cve", "capec", or
# neither), so "exactly one" is "at least one", and the pass/fail validator may try the
# usual branch first: fastjsonschema tries each branch by raising, and the other two
# raised for every ordinary reference. The validator that explains a failure keeps the
# schema as it is, so messages do not change.
_EXCLUSIVE_ONE_OF: Final = {
    "common/external-reference.json": ("^cve$", "^capec$", "^((cve)|(capec))$"),
}


@functools.cache
def _fast_schema(rel: str) -> dict[str, Any]:
    """The schema the pass/fail validator compiles: :func:`_schema`, with an exclusive
    ``oneOf`` (:data:`_EXCLUSIVE_ONE_OF`) as an ``anyOf`` of the same branches, the last
    (the common one) first. Unchanged if the schema is not shaped as expected."""
    schema = _schema(rel)
    patterns = _EXCLUSIVE_ONE_OF.get(rel)
    branches = schema.get("oneOf")
    if patterns is None or not isinstance(branches, list) or len(branches) != 3:
        return schema
    try:
        names = [b["properties"]["source_name"] for b in branches]
        shaped = (all("source_name" in b["required"] for b in branches)
                  and all(n["type"] == "string" for n in names)
                  and [names[0]["pattern"], names[1]["pattern"], names[2]["not"]["pattern"]]
                  == list(patterns) and "pattern" not in names[2])
    except (KeyError, TypeError):
        shaped = False
    if not shaped:
        return schema
    out = {k: v for k, v in schema.items() if k != "oneOf"}
    out["anyOf"] = [branches[2], branches[0], branches[1]]
    return out


def _resolve_fast(uri: str) -> dict[str, Any]:
    _resolve(uri)  # the same refusal
    return _fast_schema(uri[len(_SCHEMA_URI):])


def _idn_hostname(value: str) -> bool:
    try:
        idna.encode(value)
    except Exception:  # idna raises IDNAError, UnicodeError and, rarely, others
        return False
    return True


_FORMATS: Final[dict[str, Callable[[str], bool]]] = {
    # the same checkers stix2-validator's jsonschema uses for the three formats in the schemas
    "uri": lambda value: validate_rfc3986(value, rule="URI") is not None,
    "idn-hostname": _idn_hostname,
    "email": lambda value: _EMAIL.match(value) is not None,
}


def _rel(name: str) -> str:
    return _SCHEMA_FILES[name].relative_to(_SCHEMA_DIR).as_posix()


@functools.cache
def _compiled(name: str, detailed: bool) -> Callable[[Any], Any]:
    """The compiled validator for schema ``name``; the detailed one only explains failures."""
    schema, resolve = (_schema, _resolve) if detailed else (_fast_schema, _resolve_fast)
    validate: Callable[[Any], Any] = fastjsonschema.compile(
        schema(_rel(name)), handlers={"http": resolve, "https": resolve},
        formats=_FORMATS, use_default=False, detailed_exceptions=detailed)
    return validate


@functools.cache
def _uses_core(name: str) -> bool:
    """Whether schema ``name`` applies a core schema (and so properties.json) at top level."""
    if name in ("core", "cyber-observable-core"):
        return True
    refs = [part.get("$ref", "") for part in _raw_schema(_rel(name)).get("allOf", [])]
    return any(ref.endswith(("/core.json", "/cyber-observable-core.json")) for ref in refs)


@functools.cache
def _spec_properties(name: str) -> frozenset[str]:
    """Every top-level property the STIX 2.1 schema ``name`` defines (through refs too)."""
    found: set[str] = set()

    def walk(node: Any, rel: str) -> None:
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            target = _normalise(f"{rel.rpartition('/')[0]}/{ref}")
            walk(_raw_schema(target), target)
        found.update(node.get("properties", {}))
        for key in ("allOf", "anyOf", "oneOf"):
            for part in node.get(key, []):
                walk(part, rel)

    walk(_raw_schema(_rel(name)), _rel(name))
    return frozenset(found)


def _normalise(rel: str) -> str:
    parts: list[str] = []
    for part in rel.split("/"):
        if part == "..":
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def _schema_name(obj: dict[str, Any], type_: str) -> str:
    # stix2-validator: the schema file named after the type, else a core schema;
    # cyber-observable-core for objects without created/modified (custom SCOs).
    if type_ in _SCHEMA_FILES:
        return type_
    if "created" in obj or "modified" in obj or type_ == "marking-definition":
        return "core"
    return "cyber-observable-core"


def _describe(exc: fastjsonschema.JsonSchemaValueException) -> str:
    """One line for a schema failure, naming the property like stix2-validator does."""
    name = exc.name or "data"
    path = name[5:] if name.startswith("data.") else ("" if name == "data" else name)
    where = f"property {_show(path)}" if path else "the object"
    definition = exc.definition if isinstance(exc.definition, dict) else {}
    found = f": found {_show(exc.value)}"
    if exc.rule == "required":
        have = exc.value if isinstance(exc.value, dict) else {}
        missing = [key for key in definition.get("required", []) if key not in have]
        inside = f" in {_show(path)}" if path else ""
        return f"required property {_show(missing[0] if missing else '?')} is missing{inside}"
    if exc.rule == "pattern":
        title = definition.get("title")
        if title == "timestamp":
            return (f"{where} is not a valid STIX timestamp (RFC 3339 in UTC with 'Z', like "
                    f"'2016-05-12T08:17:27.000Z'){found}")
        if title == "timestamp_millis":
            return (f"{where} must be a timestamp precise to the millisecond "
                    f"(like '2016-05-12T08:17:27.000Z'){found}")
        if title == "identifier":
            return f"{where} is not a STIX identifier ('<type>--<RFC 4122 UUID>'){found}"
        if title == "id":
            return f"{where} must start with {_show(str(definition.get('pattern', ''))[1:])}{found}"
        return f"{where} does not match the pattern {_show(definition.get('pattern'))}{found}"
    message = str(exc)
    rest = message[len(name):].strip() if message.startswith(name) else message
    return f"{where} {rest}{found}"


def _check_schema(name: str, obj: Any, oid: str | None) -> None:
    try:
        _compiled(name, False)(obj)
    except fastjsonschema.JsonSchemaValueException:
        try:
            _compiled(name, True)(obj)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise _fail(oid, _describe(exc)) from None
        raise _fail(oid, f"does not match the STIX 2.1 schema {name!r}") from None


# --- checks done in Python before the schema --------------------------------------------------

_BIN, _HEXNAME, _ANYNAME, _RESERVEDNAME = 1, 2, 4, 8
_name_kinds: dict[str, int] = {}  # property name -> which properties.json patterns it matches


def _name_kind(key: str) -> int:
    kind = _name_kinds.get(key)
    if kind is None:
        kind = ((_BIN if _NAME_BIN.search(key) else 0) | (_HEXNAME if _NAME_HEX.search(key) else 0)
                | (_ANYNAME if _NAME_ANY.search(key) else 0)
                | (_RESERVEDNAME if key in _RESERVED else 0))
        if len(_name_kinds) < 20_000 and len(key) <= 256:  # bounded: input is untrusted
            _name_kinds[key] = kind
    return kind


def _check_names(obj: dict[str, Any], oid: str | None) -> None:
    """properties.json and core's reserved names, for the top-level properties."""
    kinds = _name_kinds
    for key, value in obj.items():
        if kinds.get(key) == _ANYNAME:  # the common case: a plain name with a plain value
            kind = type(value)
            if kind in _PLAIN or (kind is list and value):
                continue
        _check_name(key, value, oid)


def _check_name(key: Any, value: Any, oid: str | None) -> None:
    if not isinstance(key, str):
        raise _fail(oid, f"property name {_show(key)} is not a string")
    kind = _name_kind(key)
    if kind & _RESERVEDNAME:
        raise _fail(oid, f"property {key!r} is reserved by STIX 2.1 and must not be used")
    if not kind:
        raise _fail(oid, f"property name {_show(key)} is not allowed: names are 3 to 250 "
                    "characters of a-z, 0-9 and '_', starting with a letter")
    if kind & _BIN and not (isinstance(value, str) and _BINARY.search(value)):
        raise _fail(oid, f"property {key!r} must be base64 (its name ends in '_bin')"
                    f": found {_show(value)}")
    if kind & _HEXNAME and not (isinstance(value, str) and _HEX.search(value)):
        raise _fail(oid, f"property {key!r} must be an even number of hex digits (its "
                    f"name ends in '_hex'): found {_show(value)}")
    if kind & _ANYNAME:
        if value is None:
            raise _fail(oid, f"property {_show(key)} is null; STIX does not allow null "
                        "values (leave the property out instead)")
        if not isinstance(value, _JSON_TYPES) or (isinstance(value, list | tuple) and not value):
            raise _fail(oid, f"property {_show(key)} must be a non-empty list, a string, "
                        f"a number, a boolean or an object: found {_show(value)}")


def _declares(obj: dict[str, Any], kinds: Collection[str]) -> bool:
    extensions = obj.get("extensions")
    if not isinstance(extensions, dict):
        return False
    return any(isinstance(ext, dict) and ext.get("extension_type") in kinds
               for ext in extensions.values())


def _check_custom(obj: dict[str, Any], type_: str, oid: str | None) -> None:
    """Custom content must be marked as such: 'x-'/'x_' names or an extension definition."""
    hint = "pass allow_custom=True to accept unmarked custom content"
    spec_type = type_ in _SDO_TYPES or type_ in _SCO_TYPES
    if not spec_type and not type_.startswith("x-") and not _declares(obj, _NEW_TYPE_EXTENSIONS):
        raise _fail(oid, f"object type {_show(type_)} is not defined by STIX 2.1; a custom "
                    "type must start with 'x-' or be declared by a 'new-sdo', 'new-sco' or "
                    "'new-sro' extension", hint)
    if spec_type and not _declares(obj, ("toplevel-property-extension",)):
        defined = _spec_properties(type_)
        for key in obj:
            if key not in defined and not str(key).startswith("x_") and key not in _RESERVED:
                raise _fail(oid, f"property {_show(key)} is not defined by STIX 2.1 for {type_!r} "
                            "objects; a custom property must start with 'x_' or be declared "
                            "by a 'toplevel-property-extension'", hint)
    extensions = obj.get("extensions")
    if isinstance(extensions, dict):
        predefined = _E.OBSERVABLE_EXTENSIONS.get(type_, ())
        for key in extensions:
            if not (str(key).startswith(("extension-definition--", "x-")) or key in predefined):
                raise _fail(oid, f"extension {_show(key)} is not defined by STIX 2.1 for "
                            f"{_show(type_)} objects; use an extension-definition id, or an "
                            "'x-' name", hint)


# --- MUST checks that the schemas cannot express (stix2validator/v21/musts.py) ----------------

def _parse_timestamp(value: str) -> tuple[bool, tuple[str, str] | None]:
    return _parse_short(value) if len(value) <= 30 else _parse_any(value)


def _parse_any(value: str) -> tuple[bool, tuple[str, str] | None]:
    """(is a real date and time, sort key) for a string that matches the timestamp regex.

    The key orders instants to the nanosecond, as the store reads versions
    (``store.base.parse_timestamp``); it is None where the date is not real.
    stix2-validator's ``datetime.strptime`` stops at 6 fractional digits and then
    compares the raw strings, in which "Z" sorts after "." (difference 12).
    """
    year, month, day = int(value[0:4]), int(value[5:7]), int(value[8:10])
    real = (year >= 1 and value[17:19] != "60"
            and (day <= 28 or day <= calendar.monthrange(year, month)[1]))
    fraction = value[20:-1] if value[19] == "." else ""
    return real, (value[:19], fraction.ljust(9, "0")) if real else None


_parse_short = functools.lru_cache(maxsize=4096)(_parse_any)


def _timestamp_key(value: str) -> tuple[str, str] | None:
    return _parse_timestamp(value)[1] if _TIMESTAMP.match(value) else None


def _check_timestamps(obj: dict[str, Any], props: Iterable[str], oid: str | None,
                      where: str = "") -> None:
    for prop in props:
        value = obj.get(prop, _MISSING)
        if value is _MISSING:
            continue
        if not isinstance(value, str):
            raise _fail(oid, f"{where}property {prop!r} must be a timestamp string: "
                        f"found {_show(value)}")
        if _TIMESTAMP.match(value) and not _parse_timestamp(value)[0]:
            raise _fail(oid, f"{where}property {prop!r} is not a real date and time "
                        f"(bad day, year 0 or second 60): found {_show(value)}")
        if len(value) > _MAX_TIMESTAMP:  # with more than 9 fractional digits
            raise _fail(oid, f"{where}property {prop!r} has more than 9 fractional digits, "
                        f"beyond the nanoseconds intelpact reads: found {_show(value)}",
                        "round it to the nanosecond or coarser")


def _check_order(obj: dict[str, Any], pairs: Iterable[tuple[str, str, str]], oid: str | None,
                 where: str = "") -> None:
    for later, op, earlier in pairs:
        if later not in obj or earlier not in obj:
            continue
        a, b = obj[later], obj[earlier]
        if not (isinstance(a, str) and isinstance(b, str)):
            raise _fail(oid, f"{where}properties {later!r} and {earlier!r} must be timestamps")
        ka, kb = _timestamp_key(a), _timestamp_key(b)
        ordered: Any = (ka, kb) if ka is not None and kb is not None else (a, b)
        ok = ordered[0] >= ordered[1] if op == "ge" else ordered[0] > ordered[1]
        if not ok:
            relation = "earlier than" if op == "ge" else "not later than"
            raise _fail(oid, f"{where}property {later!r} ({_show(a)}) is {relation} "
                        f"{earlier!r} ({_show(b)})")


def _check_observable(obs: dict[str, Any], oid: str | None, where: str = "") -> None:
    """The MUSTs stix2-validator applies to each cyber observable (top-level or embedded)."""
    type_ = obs.get("type")
    if not isinstance(type_, str):
        return
    _check_timestamps(obs, _E.TIMESTAMP_OBSERVABLE_PROPERTIES.get(type_, ()), oid, where)
    for embed, props in _E.TIMESTAMP_EMBEDDED_PROPERTIES.get(type_, {}).items():
        holder = obs.get(embed)
        if isinstance(holder, dict):
            inner = holder.values() if embed == "extensions" else [holder]
            for part in inner:
                if isinstance(part, dict):
                    _check_timestamps(part, props, oid, f"{where}{embed}: ")
    _check_order(obs, _E.TIMESTAMP_COMPARE_OBSERVABLE.get(type_, ()), oid, where)
    if type_ == "artifact" and "mime_type" in obs and not _member(obs["mime_type"], _MEDIA_TYPES):
        raise _fail(oid, f"{where}property 'mime_type' is not an IANA media type: "
                    f"found {_show(obs['mime_type'])}")
    for t, prop in (("directory", "path_enc"), ("file", "name_enc")):
        if type_ == t and prop in obs and not _member(obs[prop], _CHAR_SETS):
            raise _fail(oid, f"{where}property {prop!r} is not an IANA character set: "
                        f"found {_show(obs[prop])}")
    if type_ == "software" and "languages" in obs:
        for lang in obs["languages"]:
            if not (_member(lang, _LANG_CODES) or _member(lang, _SOFTWARE_LANG_CODES)):
                raise _fail(oid, f"{where}property 'languages' holds {_show(lang)}, which is "
                            "not an RFC 5646 (or ISO 639-2) language code")


def _member(value: object, codes: frozenset[str]) -> bool:
    return isinstance(value, str) and value in codes


def _check_selectors(obj: dict[str, Any], oid: str | None) -> None:
    for marking in obj["granular_markings"]:
        if not isinstance(marking, dict):
            continue  # the schemas reject these; only reachable on a bundle's own properties
        for selector in marking.get("selectors", ()):
            node: Any = obj
            for segment in selector.split("."):
                index = _SELECTOR_INDEX.match(segment)
                if index:
                    i = int(index.group(1))
                    if not (isinstance(node, list | str) and i < len(node)):
                        raise _fail(oid, f"granular marking selector {_show(selector)} does not "
                                    f"resolve: {segment} is not a valid index")
                    node = node[i]
                elif isinstance(node, dict) and segment in node:
                    node = node[segment]
                else:
                    raise _fail(oid, f"granular marking selector {_show(selector)} does not "
                                f"resolve: {_show(segment)} is not a property")


def _check_refs(objects: dict[str, Any], oid: str | None) -> None:
    """Embedded observables' *_ref(s) must name another key of 'objects', of the right type."""
    def check(refs: Any, prop: str, key: str, allowed: list[str]) -> None:
        for ref in refs if isinstance(refs, list) else [refs]:
            if ref not in objects:
                raise _fail(oid, f"property {prop!r} of observable {_show(key)} refers to "
                            f"{_show(ref)}, which is not a key of 'objects'")
            target = objects[ref]
            if "type" in target and target["type"] not in allowed:
                raise _fail(oid, f"property {prop!r} of observable {_show(key)} must refer to an "
                            f"object of type {' or '.join(map(repr, allowed))}")

    for key, obs in objects.items():
        if "type" not in obs or obs["type"] not in _E.OBSERVABLE_PROP_REFS:
            continue
        for prop, rule in _E.OBSERVABLE_PROP_REFS[obs["type"]].items():
            if prop not in obs:
                continue
            if isinstance(rule, list):
                check(obs[prop], prop, key, rule)
                continue
            for embedded, inner in rule.items():
                value = obs[prop]
                if isinstance(value, dict) and embedded in value:
                    for sub, allowed in inner.items() if isinstance(inner, dict) else ():
                        if sub in value[embedded]:
                            check(value[embedded][sub], prop, key, allowed)
                elif isinstance(value, list):
                    for item in value:
                        if embedded in item:
                            check(item[embedded], prop, key, inner)


def _pattern_problem(pattern: str, version: Any) -> str | None:
    # the library's parse takes ~0.5 ms: remember the last 4,096 short patterns' verdicts
    if len(pattern) <= 4096 and isinstance(version, str):
        return _pattern_problem_cached(pattern, version)
    return _parse_pattern(pattern, version)


_LEXER_READS: Final = 4
"""How many times over stix2patterns' lexer may read a pattern (and 256 characters more)."""
_NO_BRACKETS: Final = "FAIL: Error found at line 1:0. input is missing square brackets"


class _TooCostly(Exception):
    """stix2patterns' lexer read a pattern more than _LEXER_READS times over."""


class _BoundedInput(InputStream):  # type: ignore[misc]
    """A pattern as stix2patterns' lexer reads it, read at most _LEXER_READS times over.

    The lexer reads a well-formed pattern once. But where the longest prefix some rule
    matches overruns the token it makes, it reads on from the next character again:
    every quote of an unterminated string with escaped quotes (``'\\'\\'...``) and
    every zero of a run of zeros rescanned the rest, and 10,000 characters took 32 s."""

    __slots__ = ("_left",)

    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        self._left = _LEXER_READS * len(pattern) + 256

    def consume(self) -> None:
        self._left -= 1
        if self._left < 0:
            raise _TooCostly
        super().consume()


def _run_v21(pattern: str) -> tuple[list[str], Any]:
    """stix2patterns' v2.1 ``run_validator``, step for step, but also returning the
    inspection it computes, so the pattern is parsed once (not twice: validator,
    then ``Pattern(pattern).inspect()``). Verdicts are the library's own. Raises
    :class:`_TooCostly` where the lexer would read the pattern too often."""
    listener = STIXPatternErrorListener()
    lexer = STIXPatternLexer(_BoundedInput(pattern))
    lexer.removeErrorListeners()
    parser = STIXPatternParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    for i, name in enumerate(parser.literalNames):
        if name == "<INVALID>":
            parser.literalNames[i] = parser.symbolicNames[i]
    tree = parser.pattern()
    if listener.err_strings:
        errors = list(listener.err_strings)
        if not brackets_check(pattern):
            errors.insert(0, _NO_BRACKETS)
        return errors, None
    inspection = InspectionListener()
    ParseTreeWalker.DEFAULT.walk(inspection, tree)
    data = inspection.pattern_data()
    errors = list(object_validator.verify_object(data) or [])
    try:
        ParseTreeWalker.DEFAULT.walk(ValidationListener(), tree)
    except DuplicateQualifierTypeError as exc:
        errors.insert(0, "FAIL: " + exc.args[0])
    if not brackets_check(pattern):  # as the top-level run_validator does
        errors.insert(0, _NO_BRACKETS)
    return errors, data


def _names_problem(comparisons: dict[str, Any]) -> str | None:
    """The first badly formed object type or property name among a pattern's comparisons."""
    for obj_type, expressions in comparisons.items():
        if obj_type not in _SCO_TYPES and not (_PATTERN_TYPE.match(obj_type)
                                               and 3 <= len(obj_type) <= 250):
            return f"{_show(obj_type)} is not a valid observable type name"
        known = _E.OBSERVABLE_PROPERTIES.get(obj_type, ())
        for expression in expressions:
            prop = expression[0][0]
            if prop not in known and not _PATTERN_PROPERTY.match(prop):
                return f"{_show(prop)} is not a valid observable property name"
    return None


def _library_problem(pattern: str, version: Any) -> str | None:
    """The pattern's first problem, found with stix2patterns' parser (~0.5 ms)."""
    try:
        if version == "2.1":
            errors, data = _run_v21(pattern)
        else:  # stix2patterns' run_validator for any other version, step for step
            errors = run_v20_validator(_BoundedInput(pattern))
            if not brackets_check(pattern):
                errors.insert(0, _NO_BRACKETS)
    except _TooCostly:
        return (f"stix2-patterns' lexer would read it more than {_LEXER_READS} times over, as "
                "an unterminated string or digits after a leading 0 make it do (it reads the "
                "patterns it accepts once)")
    if errors:
        return str(errors[0])
    comparisons = data.comparisons if version == "2.1" else Pattern(pattern).inspect().comparisons
    return _names_problem(comparisons)


# Set INTELPACT_SLOW_PATTERNS=1 to check every pattern with stix2patterns' parser, as before
# the fast path: benchmarks use it to measure what the fast path gains (docs/validation.md).
_FAST_PATTERNS: Final = os.environ.get("INTELPACT_SLOW_PATTERNS", "") != "1"


def _parse_pattern(pattern: str, version: Any) -> str | None:
    """The pattern's first problem, or None.

    A STIX 2.1 pattern that :func:`patterns.accepted_pattern_data` proves valid, with
    well-formed names, is accepted without the library's parser; for every other
    pattern :func:`_library_problem` gives the verdict and the message, as it did
    before the fast path existed. So only acceptances take the fast path, and each
    is one the library path gives too (see patterns.py).
    """
    if version == "2.1" and _FAST_PATTERNS:
        data = accepted_pattern_data(pattern)
        if data is not None and _names_problem(data.comparisons) is None:
            return None
    return _library_problem(pattern, version)


_pattern_problem_cached = functools.lru_cache(maxsize=4096)(_parse_pattern)


def _check_pattern(obj: dict[str, Any], oid: str | None) -> None:
    pattern = obj.get("pattern")
    if obj.get("pattern_type", "") != "stix" or not isinstance(pattern, str):
        return
    version = obj.get("pattern_version", obj.get("spec_version", "2.1"))
    problem = _pattern_problem(pattern, version)
    if problem:
        raise _fail(oid, f"property 'pattern' is not a valid STIX pattern: {problem}")


def _check_uuid4(obj: dict[str, Any], oid: str | None) -> None:
    type_ = obj["type"]
    contributing = _UUID4_UNLESS.get(type_)
    if type_ != "process" and (contributing is None or any(k in obj for k in contributing)):
        return
    if uuid.UUID(obj["id"].split("--")[-1]).version != 4:
        why = ("process objects" if type_ == "process"
               else f"{type_!r} objects without {' or '.join(map(repr, contributing or ()))}")
        raise _fail(oid, f"property 'id' must hold a UUIDv4 for {why}")


def _check_musts(obj: dict[str, Any], oid: str | None) -> None:
    type_ = obj["type"]
    _check_timestamps(obj, ("created", "modified", *_E.TIMESTAMP_PROPERTIES.get(type_, ())), oid)
    _check_order(obj, (("modified", "ge", "created"), *_E.TIMESTAMP_COMPARE.get(type_, ())), oid)
    if type_ in _SCO_TYPES:
        if "objects" not in obj:
            _check_observable(obj, oid)
        elif isinstance(obj["objects"], dict):  # stix2-validator checks these instead
            for key, obs in obj["objects"].items():
                _check_observable(obs, oid, f"observable {_show(key)}: ")
        else:
            raise _fail(oid, f"property 'objects' must be a dictionary of observables: "
                        f"found {_show(obj['objects'])}")
    objects = obj.get("objects")
    if type_ == "observed-data" and isinstance(objects, dict):
        for key, obs in objects.items():
            _check_observable(obs, oid, f"observable {_show(key)}: ")
        _check_refs(objects, oid)
    if type_ == "marking-definition":
        if obj["id"] in obj.get("object_marking_refs", ()):
            raise _fail(oid, "property 'object_marking_refs' must not name the marking itself")
        for marking in obj.get("granular_markings", ()):
            if marking.get("marking_ref") == obj["id"]:
                raise _fail(oid, "property 'granular_markings' must not name the marking itself")
    if "granular_markings" in obj:
        _check_selectors(obj, oid)
    if "lang" in obj and not _member(obj["lang"], _LANG_CODES):
        raise _fail(oid, f"property 'lang' is not an RFC 5646 language code known to STIX: "
                    f"found {_show(obj['lang'])}")
    if type_ == "indicator":
        _check_pattern(obj, oid)
    if "cpe" in obj:
        try:
            CPE(obj["cpe"], CPE.VERSION_2_3)
        except Exception:  # the cpe library signals bad input with several exception types
            raise _fail(oid, f"property 'cpe' is not a CPE 2.3 name: found "
                        f"{_show(obj['cpe'])}") from None
    if type_ == "language-content" and "contents" in obj:
        for lang, content in obj["contents"].items():
            if not _member(lang, _LANG_CODES):
                raise _fail(oid, f"property 'contents' has key {_show(lang)}, which is not an "
                            "RFC 5646 language code")
            if not isinstance(content, dict):
                raise _fail(oid, f"property 'contents' -> {_show(lang)} must be a dictionary "
                            f"of translated properties: found {_show(content)}")
            for name in content:
                if not _LANG_PROPERTY.match(name):
                    raise _fail(oid, f"property 'contents' -> {_show(lang)} has key "
                                f"{_show(name)}, which is not a valid property name")
    _check_uuid4(obj, oid)
    # stix2-validator runs these checks on STIX objects found in any list property too
    for value in obj.values():
        if type(value) is list:
            for item in value:
                if isinstance(item, dict) and "id" in item and "type" in item:
                    _check_musts(item, _object_id(item))


# --- the objects ------------------------------------------------------------------------------

def _object_id(obj: dict[str, Any]) -> str | None:
    ident = obj.get("id")
    return ident if isinstance(ident, str) and len(ident) <= 300 and "\n" not in ident else None


def _check_type(type_: str, oid: str | None) -> None:
    if type_ in _E.RESERVED_OBJECTS:
        raise _fail(oid, f"object type {_show(type_)} is reserved by STIX 2.1 and must not be used")


def _check_object(obj: Any, allow_custom: bool) -> None:
    if not isinstance(obj, dict):
        raise _fail(None, f"a STIX object must be a JSON object: found {_show(obj)}")
    oid = _object_id(obj)
    for prop in ("type", "id"):
        if prop not in obj:
            raise _fail(oid, f"required property {prop!r} is missing")
        if not isinstance(obj[prop], str):
            raise _fail(oid, f"property {prop!r} must be a string: found {_show(obj[prop])}")
    type_: str = obj["type"]
    _check_type(type_, oid)
    if type_ == "bundle":
        raise _fail(oid, "a bundle cannot be inside a bundle or envelope",
                    "a bundle is not a STIX object: send the objects it holds")
    # STIX 2.1 section 2.9: an identifier is '<type>--<UUID>', its type the object's own
    if not obj["id"].startswith(type_ + "--"):
        raise _fail(oid, f"property 'id' must start with {_show(type_ + '--')}, the object's "
                    f"type: found {_show(obj['id'])}")
    name = _schema_name(obj, type_)
    spec_version = obj.get("spec_version", _MISSING)
    if spec_version is _MISSING:
        if name != "cyber-observable-core" and type_ not in _SCO_TYPES:
            raise _fail(oid, "required property 'spec_version' is missing",
                        "STIX 2.1 objects carry \"spec_version\": \"2.1\"")
    elif spec_version != "2.1":
        raise _fail(oid, f"property 'spec_version' must be '2.1': found {_show(spec_version)}",
                    "intelpact accepts STIX 2.1 only; convert older content first")
    if _uses_core(name):
        _check_names(obj, oid)
    if not allow_custom:
        _check_custom(obj, type_, oid)
    if type_ == "observed-data" and "objects" in obj:
        _check_embedded(obj["objects"], oid, allow_custom)  # first: clearer than the oneOf
    _check_schema(name, obj, oid)
    _check_musts(obj, oid)
    _check_own_extensions(obj, type_, oid)
    _check_integers(obj, oid)


def _check_integers(obj: dict[str, Any], oid: str | None) -> None:
    """Every integer, at any depth, within I-JSON's range, ±(2**53 - 1). intelpact signs
    an object's RFC 8785 form, whose numbers are IEEE doubles: a larger integer cannot be
    written there, so an object holding one could be neither signed nor verified."""
    for key, value in obj.items():
        stack = [value]
        while stack:
            item = stack.pop()
            kind = type(item)
            if kind is dict:
                stack.extend(item.values())
            elif kind is list:
                stack.extend(item)
            elif kind is int and not -_SAFE_INTEGER <= item <= _SAFE_INTEGER:
                raise _fail(oid, f"property {_show(key)} holds the integer {_show(item)}, "
                            "beyond ±(2**53 - 1): RFC 8785, the form intelpact signs, cannot "
                            "write it", "write so large a number as a string")


def _check_own_extensions(obj: dict[str, Any], type_: str, oid: str | None) -> None:
    """The extensions intelpact defines, against their definitions (STIX 2.1 section 7.3:
    an extension's content follows its definition's schema). The AIS extension's track
    is read as numbers by the console's map: one malformed position stored would break
    the map for everyone who may see it."""
    extensions = obj.get("extensions")
    ext = extensions.get(AIS_EXTENSION_ID, MISSING) if type(extensions) is dict else MISSING
    if ext is MISSING:
        return
    problem = ais_problem(type_, ext)
    if problem is not None:
        what, found = problem
        raise _fail(oid, f"the intelpact AIS extension ({AIS_EXTENSION_ID}): {what}"
                    + ("" if found is MISSING else f": found {_show(found)}"),
                    "docs/maritime.md lists the extension's properties and what each holds")


def _check_embedded(objects: Any, oid: str | None, allow_custom: bool) -> None:
    """Each observable in observed-data's (deprecated) 'objects', against its own schema."""
    if not isinstance(objects, dict):
        raise _fail(oid, "property 'objects' must be a dictionary of observables")
    for key, obs in objects.items():
        if not isinstance(obs, dict) or not isinstance(obs.get("type"), str):
            raise _fail(oid, f"observable {_show(key)} in 'objects' needs a string 'type'")
        type_ = obs["type"]
        name = type_ if type_ in _SCHEMA_FILES else "cyber-observable-core"
        where = f"observable {_show(key)}: "
        try:
            _check_type(type_, oid)
            if _uses_core(name):
                _check_names(obs, oid)
            if not allow_custom:
                _check_custom(obs, type_, oid)
            _check_schema(name, obs, oid)
        except StixValidationError as exc:
            raise _fail(oid, where + exc.reason, exc.hint) from None


def _check_envelope(doc: Any) -> list[Any]:
    """The list of objects of a bundle or TAXII 2.1 envelope, after checking the container."""
    if not isinstance(doc, dict):
        raise _fail(None, f"expected a STIX bundle or a TAXII envelope (a JSON object): "
                    f"found {_show(doc)}")
    if "type" in doc:
        oid = _object_id(doc)
        if doc["type"] != "bundle":
            raise _fail(oid, f"expected a bundle or a TAXII envelope, found a {_show(doc['type'])}"
                        " object", "use validate_object() for a single object")
        _check_schema("bundle", doc, oid)
        # stix2-validator runs its MUST checks on the bundle itself too (objects: one by one)
        _check_musts({key: value for key, value in doc.items() if key != "objects"}, oid)
    else:
        for key in doc:
            if key not in ("objects", "more", "next"):
                raise _fail(None, f"a TAXII envelope has only 'objects', 'more' and 'next': "
                            f"found {_show(key)}", "a STIX bundle needs \"type\": \"bundle\"")
        if not isinstance(doc.get("more", False), bool):
            raise _fail(None, "envelope property 'more' must be a boolean")
        if not isinstance(doc.get("next", ""), str):
            raise _fail(None, "envelope property 'next' must be a string")
        oid = None
    objects = doc.get("objects", [])
    if not isinstance(objects, list):
        raise _fail(oid, f"property 'objects' must be a list: found {_show(objects)}")
    return objects


def _guarded(check: Callable[[], None], obj: Any) -> None:
    """Run ``check``; anything it raises other than StixValidationError becomes one."""
    try:
        check()
    except StixValidationError:
        raise
    except RecursionError:
        oid = _object_id(obj) if isinstance(obj, dict) else None
        raise _fail(oid, "nested too deeply to validate") from None
    except Exception as exc:  # the promise: only StixValidationError leaves this module
        oid = _object_id(obj) if isinstance(obj, dict) else None
        raise _fail(oid, f"could not be validated ({type(exc).__name__}: {_show(str(exc))})",
                    "the input is malformed in a way no STIX rule names") from exc


def validate_object(obj: dict[str, Any], *, allow_custom: bool = False) -> None:
    """Validate one STIX 2.1 object; raise :class:`StixValidationError` on the first problem.

    A bundle is not a STIX object (STIX 2.1 section 8), and is refused: each caller
    validates an envelope's members one by one, and a bundle among them, accepted as a
    whole, was stored as one object, with the objects inside it never labelled, checked
    for their originator or release, or signed on their own. :func:`validate_bundle`
    checks a bundle. ``allow_custom=False`` rejects custom content that is not marked as such:
    types without ``x-``, properties without ``x_`` on STIX-defined types, and
    extension names that are neither extension-definition ids nor ``x-...``,
    unless an extension definition declares them. Never raises anything else.
    """
    _guarded(functools.partial(_check_object, obj, allow_custom), obj)


def bundle_objects(doc: Any) -> list[Any]:
    """The members of a STIX bundle or TAXII 2.1 envelope, after checking the container
    alone (its members are left to :func:`validate_object`). Raises
    :class:`StixValidationError` when the container is unusable."""
    objects: list[Any] = []
    _guarded(lambda: objects.extend(_check_envelope(doc)), doc)
    return objects


def validate_bundle(doc: dict[str, Any], *, allow_custom: bool = False) -> list[ObjectResult]:
    """Validate a STIX bundle or TAXII 2.1 envelope object by object.

    Returns ``(object, error_or_None)`` for every member, in order, so that the
    valid objects can be stored even when others are rejected. Raises
    :class:`StixValidationError` only when the container itself is unusable.
    """
    results: list[ObjectResult] = []
    for item in bundle_objects(doc):
        try:
            _guarded(functools.partial(_check_object, item, allow_custom), item)
        except StixValidationError as exc:
            results.append((item, exc))
        else:
            results.append((item, None))
    return results
