"""The information security agreement, loaded from TOML and validated.

An agreement is data, not code (docs/agreements.md explains every field). It
fixes the *shared scale*: the rows of its equivalence table, lowest first. A
label's rank is an index into that scale, so comparing two labels is comparing
two integers. Each party's national levels map onto the scale:

- a level that is *directly* equivalent to a row (``NZL = "SECRET"``);
- a row a party has no tier for, protected as one of its higher levels
  (``JPN = { treat_as = "秘" }``: Japan has no RESTRICTED tier);
- a row a party cannot hold at all (``FJI = { no_equivalent = true }``).

Loading checks everything and each error names the file, the field and the fix.
The content hash is SHA-256 over the RFC 8785 canonical JSON of the parsed
agreement, so formatting and comments do not change it but any rule does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rfc8785

from .errors import AgreementError

STATES = ("draft", "in-force", "terminated")
ON_TERMINATION = ("continue-protection", "return", "destroy")
TLP_NAMES = ("clear", "white", "green", "amber", "amber+strict", "red")
ACS_CLASSIFICATIONS = ("U", "C", "S", "TS")
_PARTY = re.compile(r"[A-Z]{3}")  # matched whole (fullmatch: "$" lets "\n" through)
_TOKEN = re.compile(r"[A-Z0-9][A-Z0-9_-]{0,31}")
# The officially assigned ISO 3166-1 alpha-3 codes (249, as the standard stands in 2026):
# a party is a country, and a code outside them ("XYZ", a user-assigned "XKX") is
# a typing error or no country the standard names
_ISO_3166_ALPHA3 = (
    "ABW AFG AGO AIA ALA ALB AND ARE ARG ARM ASM ATA ATF ATG AUS AUT AZE BDI BEL BEN "
    "BES BFA BGD BGR BHR BHS BIH BLM BLR BLZ BMU BOL BRA BRB BRN BTN BVT BWA CAF CAN "
    "CCK CHE CHL CHN CIV CMR COD COG COK COL COM CPV CRI CUB CUW CXR CYM CYP CZE DEU "
    "DJI DMA DNK DOM DZA ECU EGY ERI ESH ESP EST ETH FIN FJI FLK FRA FRO FSM GAB GBR "
    "GEO GGY GHA GIB GIN GLP GMB GNB GNQ GRC GRD GRL GTM GUF GUM GUY HKG HMD HND HRV "
    "HTI HUN IDN IMN IND IOT IRL IRN IRQ ISL ISR ITA JAM JEY JOR JPN KAZ KEN KGZ KHM "
    "KIR KNA KOR KWT LAO LBN LBR LBY LCA LIE LKA LSO LTU LUX LVA MAC MAF MAR MCO MDA "
    "MDG MDV MEX MHL MKD MLI MLT MMR MNE MNG MNP MOZ MRT MSR MTQ MUS MWI MYS MYT NAM "
    "NCL NER NFK NGA NIC NIU NLD NOR NPL NRU NZL OMN PAK PAN PCN PER PHL PLW PNG POL "
    "PRI PRK PRT PRY PSE PYF QAT REU ROU RUS RWA SAU SDN SEN SGP SGS SHN SJM SLB SLE "
    "SLV SMR SOM SPM SRB SSD STP SUR SVK SVN SWE SWZ SXM SYC SYR TCA TCD TGO THA TJK "
    "TKL TKM TLS TON TTO TUN TUR TUV TWN TZA UGA UKR UMI URY USA UZB VAT VCT VEN VGB "
    "VIR VNM VUT WLF WSM YEM ZAF ZMB ZWE"
)
ISO_3166_ALPHA3 = frozenset(_ISO_3166_ALPHA3.split())


@dataclass(frozen=True, slots=True)
class Level:
    """One level of a national scheme, in the nation's own words."""

    name: str
    abbrev: str
    romanisation: str | None
    gloss: str | None
    classified: bool
    aliases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Scheme:
    """A party's national classification scheme, lowest level first."""

    party: str
    country: str
    levels: tuple[Level, ...]

    def find(self, words: str) -> Level | None:
        """The level called ``words`` (name, alias, romanisation or abbrev; any case)."""
        wanted = words.strip().casefold()
        for level in self.levels:
            names = (level.name, level.abbrev, level.romanisation or "", *level.aliases)
            if any(wanted == n.casefold() for n in names if n):
                return level
        return None


@dataclass(frozen=True, slots=True)
class Cell:
    """What one party calls one row of the shared scale."""

    level: str | None  # the national level name; None when there is no equivalent
    treat_as: bool = False  # True: no such tier, protected as ``level`` (a higher one)

    @property
    def held(self) -> bool:
        return self.level is not None


@dataclass(frozen=True, slots=True)
class Row:
    """A row of the equivalence table: one rank of the shared scale."""

    rank: int
    name: str
    abbrev: str
    cells: Mapping[str, Cell]


@dataclass(frozen=True, slots=True)
class Caveat:
    """A caveat or compartment: a person must hold it to read what carries it."""

    name: str
    title: str
    releasable_to: frozenset[str] | None  # None: any party of the agreement may hold it


@dataclass(frozen=True, slots=True)
class Community:
    """A community of interest (need to know): MARITIME, CLIMATE, ..."""

    name: str
    title: str


@dataclass(frozen=True, slots=True)
class ForeignMarking:
    """How a TLP or ACS marking maps into a label under this agreement."""

    rank: int
    rel_to: str  # "any", "agreement" or "originator"
    caveats: frozenset[str]


@dataclass(frozen=True, slots=True)
class Rules:
    """The agreement's ``[rules]``. ``release_requires_community``: a partner receives
    only what names at least one of the agreement's communities (an arrangement that
    shares its communities' material, not everything its parties may read)."""

    third_party_consent: bool
    reclassify: str
    breach_notice_hours: int
    on_termination: str
    release_requires_community: bool = False


@dataclass(frozen=True)
class Agreement:
    """A validated agreement. Build it with :func:`load_agreement` or :func:`parse_agreement`."""

    id: str
    title: str
    version: str
    illustrative: bool
    state: str
    signed: dt.date | None
    in_force: dt.date | None
    terminated: dt.date | None
    parties: tuple[str, ...]
    schemes: Mapping[str, Scheme]
    rows: tuple[Row, ...]
    covered: frozenset[int]
    caveats: Mapping[str, Caveat]
    communities: Mapping[str, Community]
    rules: Rules
    tlp: Mapping[str, ForeignMarking]
    acs: Mapping[str, ForeignMarking]
    canonical: Mapping[str, Any] = field(repr=False)
    content_hash: str = ""
    source: str = "<agreement>"
    # the texts of this agreement the node pinned before this one (Node: history), by
    # which a partner's marking made before an amendment is still read
    earlier: tuple[Agreement, ...] = field(default=(), repr=False, compare=False)
    # derived tables, filled in __post_init__
    _national_rank: dict[str, dict[str, int]] = field(default_factory=dict, repr=False)
    _required_rank: dict[str, tuple[int | None, ...]] = field(default_factory=dict, repr=False)
    _row_by_name: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for row in self.rows:
            self._row_by_name[row.name.casefold()] = row.rank
        for party in self.parties:
            ranks: dict[str, int] = {}
            for row in self.rows:
                cell = row.cells[party]
                if cell.level is not None and not cell.treat_as:
                    ranks[cell.level] = row.rank
            self._national_rank[party] = ranks
            required: list[int | None] = []
            for row in self.rows:
                cell = row.cells[party]
                required.append(None if cell.level is None else ranks[cell.level])
            self._required_rank[party] = tuple(required)

    # -- translation ---------------------------------------------------------------
    def rank_of(self, party: str, words: str) -> int:
        """The shared rank of a level in ``party``'s own words (or its romanisation)."""
        scheme = self.schemes.get(party)
        if scheme is None:
            raise KeyError(f"{party} is not a party to agreement {self.id}")
        level = scheme.find(words)
        if level is None:
            known = ", ".join(lv.name for lv in scheme.levels)
            raise KeyError(f"{party} has no level {words!r}; its levels are: {known}")
        return self._national_rank[party][level.name]

    def shared_rank(self, name: str) -> int:
        """The rank of a row of the shared scale, by the row's name (any case)."""
        try:
            return self._row_by_name[name.casefold()]
        except KeyError:
            known = ", ".join(r.name for r in self.rows)
            raise KeyError(f"agreement {self.id} has no shared level {name!r}; "
                           f"its levels are: {known}") from None

    def required_rank(self, party: str, rank: int) -> int | None:
        """The clearance rank a person of ``party`` needs to read ``rank``.

        Usually ``rank`` itself; higher where the party protects the row as a
        higher tier ("treat as"); None where the party has no equivalent.
        """
        return self._required_rank[party][rank]

    def words(self, party: str, rank: int) -> Level | None:
        """The national level ``party`` uses for ``rank`` (None: no equivalent)."""
        cell = self.rows[rank].cells[party]
        if cell.level is None:
            return None
        level = self.schemes[party].find(cell.level)
        return level

    def level(self, party: str, words: str) -> Level:
        scheme = self.schemes[party]
        level = scheme.find(words)
        if level is None:
            raise KeyError(f"{party} has no level {words!r}")
        return level

    def in_force_on(self, day: dt.date) -> bool:
        """Whether the agreement is in force on ``day`` (a UTC date): its state is in-force
        and its date of entry into force has come, or it is terminated and its date of
        termination is still to come. A text may be pinned in-force ahead of its entry
        into force, or terminated ahead of its termination: there is no exchange under it
        before the first day, and none from the second on."""
        if self.in_force is not None and day < self.in_force:
            return False
        if self.state == "in-force":
            return True
        return self.state == "terminated" and not self.terminated_on(day)

    def terminated_on(self, day: dt.date) -> bool:
        """Whether the agreement has ended by ``day`` (a UTC date): its state is terminated
        and its date of termination has come."""
        return self.state == "terminated" and (self.terminated is None
                                               or self.terminated <= day)

    @property
    def terminated_now(self) -> bool:
        """:meth:`terminated_on` today (UTC)."""
        return self.terminated_on(dt.datetime.now(dt.UTC).date())

    @property
    def in_force_now(self) -> bool:
        """:meth:`in_force_on` today (UTC)."""
        return self.in_force_on(dt.datetime.now(dt.UTC).date())


# -- loading -----------------------------------------------------------------------

def load_agreement(path: str | Path, *, stored: bool = False) -> Agreement:
    """Read and validate an agreement file. Raises :class:`AgreementError`.

    ``stored``: a text this node pinned already (its own, one in agreement-history, one
    staged by a pin), read as :func:`parse_agreement` reads a stored one."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AgreementError(source, "(file)", f"cannot read: {exc.strerror}",
                             "pass the path of an agreement TOML file") from None
    except UnicodeDecodeError:
        raise AgreementError(source, "(file)", "is not UTF-8 text",
                             "save the agreement as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AgreementError(source, "(syntax)", f"not valid TOML: {exc}",
                             "fix the TOML syntax at the position shown") from None
    return parse_agreement(data, source=source, stored=stored)


class _Reader:
    """Walks a TOML table, remembering which keys were read to reject unknown ones."""

    def __init__(self, source: str, stored: bool = False) -> None:
        self.source = source
        self.stored = stored

    def fail(self, where: str, problem: str, fix: str) -> AgreementError:
        return AgreementError(self.source, where, problem, fix)

    def table(self, data: Any, where: str, allowed: Sequence[str],
              required: Sequence[str] = ()) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(where, f"expected a table, found {type(data).__name__}",
                            f"write [{where}] as a TOML table")
        for key in data:
            if key not in allowed:
                raise self.fail(f"{where}.{key}" if where else key, "unknown field",
                                f"remove it; the fields allowed here are: {', '.join(allowed)}")
        for key in required:
            if key not in data:
                raise self.fail(f"{where}.{key}" if where else key, "missing",
                                f"add {key} to [{where or 'top level'}]")
        return data

    def string(self, data: dict[str, Any], key: str, where: str,
               default: str | None = None) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{where}.{key}", f"expected a non-empty string, found {value!r}",
                            f'write {key} = "..."')
        return value.strip()

    def party(self, value: Any, where: str, parties: Sequence[str] | None = None) -> str:
        if not isinstance(value, str) or not _PARTY.fullmatch(value):
            raise self.fail(where, f"{value!r} is not an ISO 3166-1 alpha-3 code",
                            'use three capital letters, e.g. "JPN", "NZL", "FJI"')
        if value not in ISO_3166_ALPHA3 and not self.stored:
            raise self.fail(where, f"{value} is not a country's ISO 3166-1 alpha-3 code",
                            "use the code ISO 3166-1 assigns the country, e.g. \"JPN\", "
                            "\"NZL\", \"FJI\"")
        if parties is not None and value not in parties:
            raise self.fail(where, f"{value} is not a party to this agreement",
                            f"use one of {', '.join(parties)} or add it to agreement.parties")
        return value

    def token(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not _TOKEN.fullmatch(value):
            raise self.fail(where, f"{value!r} is not a valid name",
                            "use capital letters, digits, '-' or '_' (at most 32), e.g. NZEO")
        return value

    def date(self, data: dict[str, Any], key: str, where: str) -> dt.date | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
            raise self.fail(f"{where}.{key}", f"expected a date, found {value!r}",
                            f"write {key} = 2026-01-31 (a TOML date, no quotes)")
        return value


def parse_agreement(data: Mapping[str, Any], *, source: str = "<agreement>",
                    stored: bool = False) -> Agreement:
    """Validate parsed TOML and build an :class:`Agreement`. Raises :class:`AgreementError`.

    ``stored``: a text pinned before these checks were made (party codes outside ISO
    3166-1, a ``no_equivalent`` row below a level the party holds) is still read, so a
    node that pinned one opens, and a partner's marking made under an earlier text is
    still read; a text being pinned or used for ``init`` is refused."""
    r = _Reader(source, stored)
    top = r.table(dict(data), "", ("agreement", "rules", "schemes", "equivalence", "exchange",
                                   "caveats", "communities", "markings"),
                  ("agreement", "schemes", "equivalence", "exchange"))

    # agreement -------------------------------------------------------------------------
    a = r.table(top["agreement"], "agreement",
                ("id", "title", "version", "illustrative", "parties", "status", "notes"),
                ("id", "title", "version", "parties", "status"))
    agreement_id = r.string(a, "id", "agreement")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{0,63}", agreement_id):
        raise r.fail("agreement.id", f"{agreement_id!r} is not a valid id",
                     "use lower-case letters, digits, '.' and '-', e.g. jpn-nzl-isa")
    title = r.string(a, "title", "agreement")
    version = r.string(a, "version", "agreement")
    illustrative = a.get("illustrative", False)
    if not isinstance(illustrative, bool):
        raise r.fail("agreement.illustrative", f"expected true or false, found {illustrative!r}",
                     "write illustrative = true for a sample agreement")
    if a.get("notes") is not None and not isinstance(a["notes"], str):
        raise r.fail("agreement.notes", "expected a string", 'write notes = "..."')
    raw_parties = a["parties"]
    if not isinstance(raw_parties, list) or len(raw_parties) < 2:
        raise r.fail("agreement.parties", f"expected a list of at least two parties, "
                     f"found {raw_parties!r}", 'write parties = ["JPN", "NZL"]')
    parties = tuple(r.party(p, f"agreement.parties[{i}]") for i, p in enumerate(raw_parties))
    if len(set(parties)) != len(parties):
        dup = next(p for p in parties if parties.count(p) > 1)
        raise r.fail("agreement.parties", f"{dup} is listed twice", "list each party once")

    st = r.table(a["status"], "agreement.status", ("state", "signed", "in_force", "terminated"),
                 ("state",))
    state = st["state"]
    if state not in STATES:
        raise r.fail("agreement.status.state", f"{state!r} is not a state",
                     f"use one of: {', '.join(STATES)}")
    signed = r.date(st, "signed", "agreement.status")
    in_force = r.date(st, "in_force", "agreement.status")
    terminated = r.date(st, "terminated", "agreement.status")
    if state in ("in-force", "terminated") and in_force is None:
        raise r.fail("agreement.status.in_force", f"missing for state {state!r}",
                     "add the date of entry into force, e.g. in_force = 2026-03-01")
    if state == "terminated" and terminated is None:
        raise r.fail("agreement.status.terminated", "missing for state 'terminated'",
                     "add the date of termination")
    if state != "terminated" and terminated is not None:
        raise r.fail("agreement.status.terminated", f"set while the state is {state!r}",
                     "remove it, or set state = \"terminated\"")
    if signed and in_force and in_force < signed:
        raise r.fail("agreement.status.in_force", f"{in_force} is before signature {signed}",
                     "entry into force cannot precede signature")
    if in_force and terminated and terminated < in_force:
        raise r.fail("agreement.status.terminated", f"{terminated} is before entry into force",
                     "termination cannot precede entry into force")

    # schemes --------------------------------------------------------------------------
    raw_schemes = r.table(top["schemes"], "schemes", parties)
    schemes: dict[str, Scheme] = {}
    for party in parties:
        if party not in raw_schemes:
            raise r.fail(f"schemes.{party}", "missing: every party needs its national scheme",
                         f"add [schemes.{party}] with its levels, lowest first")
        schemes[party] = _scheme(r, party, raw_schemes[party])

    # equivalence table ---------------------------------------------------------------
    raw_rows = top["equivalence"]
    if not isinstance(raw_rows, list) or not raw_rows:
        raise r.fail("equivalence", "expected at least one [[equivalence]] row",
                     "add one [[equivalence]] row per shared level, lowest first")
    rows = _rows(r, raw_rows, parties, schemes)

    # exchange -------------------------------------------------------------------------
    ex = r.table(top["exchange"], "exchange", ("covered",), ("covered",))
    covered_names = ex["covered"]
    if not isinstance(covered_names, list) or not covered_names:
        raise r.fail("exchange.covered", "expected a non-empty list of shared levels",
                     'write covered = ["RESTRICTED", "CONFIDENTIAL", ...]')
    by_name = {row.name: row for row in rows}
    covered: set[int] = set()
    for i, name in enumerate(covered_names):
        if not isinstance(name, str) or name not in by_name:
            raise r.fail(f"exchange.covered[{i}]", f"{name!r} is not a row of the equivalence "
                         "table", f"use one of: {', '.join(by_name)}")
        if by_name[name].rank in covered:
            raise r.fail(f"exchange.covered[{i}]", f"{name} is listed twice", "list it once")
        covered.add(by_name[name].rank)

    # caveats and communities ----------------------------------------------------------
    caveats: dict[str, Caveat] = {}
    for i, raw in enumerate(top.get("caveats", [])):
        where = f"caveats[{i}]"
        c = r.table(raw, where, ("name", "title", "releasable_to"), ("name", "title"))
        name = r.token(c["name"], f"{where}.name")
        if name in caveats:
            raise r.fail(f"{where}.name", f"caveat {name} is defined twice", "define it once")
        rel = c.get("releasable_to")
        rel_set = None
        if rel is not None:
            if not isinstance(rel, list) or not rel:
                raise r.fail(f"{where}.releasable_to", "expected a non-empty list of parties",
                             'write releasable_to = ["NZL"]')
            rel_set = frozenset(r.party(p, f"{where}.releasable_to[{j}]", parties)
                                for j, p in enumerate(rel))
        caveats[name] = Caveat(name, r.string(c, "title", where), rel_set)
    communities: dict[str, Community] = {}
    for i, raw in enumerate(top.get("communities", [])):
        where = f"communities[{i}]"
        c = r.table(raw, where, ("name", "title"), ("name", "title"))
        name = r.token(c["name"], f"{where}.name")
        if name in communities or name in caveats:
            raise r.fail(f"{where}.name", f"{name} is already defined",
                         "give each caveat and community a distinct name")
        communities[name] = Community(name, r.string(c, "title", where))

    # rules ----------------------------------------------------------------------------
    ru = r.table(top.get("rules", {}), "rules",
                 ("third_party_release_requires_consent", "reclassify", "breach_notice_hours",
                  "on_termination", "release_requires_community"))
    consent = ru.get("third_party_release_requires_consent", True)
    if not isinstance(consent, bool):
        raise r.fail("rules.third_party_release_requires_consent",
                     f"expected true or false, found {consent!r}",
                     "write third_party_release_requires_consent = true")
    reclassify = ru.get("reclassify", "originator")
    if reclassify != "originator":
        raise r.fail("rules.reclassify", f"{reclassify!r} is not supported",
                     'only the originator may reclassify: write reclassify = "originator"')
    hours = ru.get("breach_notice_hours", 24)
    if not isinstance(hours, int) or isinstance(hours, bool) or not 0 < hours <= 24 * 30:
        raise r.fail("rules.breach_notice_hours", f"expected hours between 1 and 720, "
                     f"found {hours!r}", "write breach_notice_hours = 24")
    on_term = ru.get("on_termination", "continue-protection")
    if on_term not in ON_TERMINATION:
        raise r.fail("rules.on_termination", f"{on_term!r} is not an option",
                     f"use one of: {', '.join(ON_TERMINATION)}")
    needs_community = ru.get("release_requires_community", False)
    if not isinstance(needs_community, bool):
        raise r.fail("rules.release_requires_community",
                     f"expected true or false, found {needs_community!r}",
                     "write release_requires_community = true")
    if needs_community and not communities:
        raise r.fail("rules.release_requires_community",
                     "the agreement defines no communities, so nothing could be released",
                     "add [[communities]] or write release_requires_community = false")
    rules = Rules(consent, reclassify, hours, on_term, needs_community)

    # foreign markings -----------------------------------------------------------------
    mk = r.table(top.get("markings", {}), "markings", ("tlp", "acs"))
    lowest_covered = min(covered)
    tlp = _foreign(r, mk.get("tlp", {}), "markings.tlp", TLP_NAMES, by_name, caveats,
                   _default_tlp(rows, lowest_covered))
    acs = _foreign(r, mk.get("acs", {}), "markings.acs", ACS_CLASSIFICATIONS, by_name, caveats,
                   _default_acs(rows))

    canonical = _canonical(agreement_id, title, version, illustrative, state, signed, in_force,
                           terminated, parties, schemes, rows, covered, caveats, communities,
                           rules, tlp, acs)
    digest = hashlib.sha256(rfc8785.dumps(canonical)).hexdigest()
    return Agreement(
        id=agreement_id, title=title, version=version, illustrative=illustrative, state=state,
        signed=signed, in_force=in_force, terminated=terminated, parties=parties,
        schemes=schemes, rows=rows, covered=frozenset(covered), caveats=caveats,
        communities=communities, rules=rules, tlp=tlp, acs=acs, canonical=canonical,
        content_hash=f"sha256:{digest}", source=source,
    )


def _scheme(r: _Reader, party: str, raw: Any) -> Scheme:
    where = f"schemes.{party}"
    s = r.table(raw, where, ("country", "levels"), ("country", "levels"))
    levels_raw = s["levels"]
    if not isinstance(levels_raw, list) or not levels_raw:
        raise r.fail(f"{where}.levels", "expected at least one level",
                     f"add [[{where}.levels]] entries, lowest first")
    levels: list[Level] = []
    seen: dict[str, str] = {}
    for i, raw_level in enumerate(levels_raw):
        lw = f"{where}.levels[{i}]"
        lv = r.table(raw_level, lw, ("name", "abbrev", "romanisation", "gloss", "classified",
                                     "aliases"), ("name",))
        name = r.string(lv, "name", lw)
        abbrev = r.string(lv, "abbrev", lw, default=name)
        roman = lv.get("romanisation")
        gloss = lv.get("gloss")
        for key, value in (("romanisation", roman), ("gloss", gloss)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise r.fail(f"{lw}.{key}", f"expected a non-empty string, found {value!r}",
                             f'write {key} = "..." or leave it out')
        if not name.isascii() and roman is None:
            raise r.fail(f"{lw}.romanisation", f"missing for {name!r}",
                         "a level written in a non-Latin script needs a romanisation")
        classified = lv.get("classified", True)
        if not isinstance(classified, bool):
            raise r.fail(f"{lw}.classified", f"expected true or false, found {classified!r}",
                         "write classified = false for a non-classification level")
        aliases = lv.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(x, str) and x for x in aliases):
            raise r.fail(f"{lw}.aliases", "expected a list of names", 'write aliases = ["..."]')
        for n in (name, abbrev, roman, *aliases):
            if not n:
                continue
            key = n.casefold()
            if key in seen and seen[key] != name:
                raise r.fail(lw, f"the name {n!r} is used by both {seen[key]!r} and {name!r}",
                             "every name, abbreviation, romanisation and alias in a scheme must "
                             "be unique")
            seen[key] = name
        levels.append(Level(name, abbrev, roman, gloss, classified, tuple(aliases)))
    if len({lv.name for lv in levels}) != len(levels):
        raise r.fail(f"{where}.levels", "a level is listed twice", "list each level once")
    return Scheme(party, r.string(s, "country", where), tuple(levels))


def _rows(r: _Reader, raw_rows: list[Any], parties: tuple[str, ...],
          schemes: Mapping[str, Scheme]) -> tuple[Row, ...]:
    rows: list[Row] = []
    pending_treat: list[tuple[str, int, str, str]] = []
    direct_rank: dict[str, dict[str, int]] = {p: {} for p in parties}
    names: set[str] = set()
    for i, raw in enumerate(raw_rows):
        where = f"equivalence[{i}]"
        e = r.table(raw, where, ("level", "abbrev", *parties), ("level", *parties))
        name = r.string(e, "level", where)
        if name.casefold() in names:
            raise r.fail(f"{where}.level", f"{name!r} is listed twice",
                         "each shared level appears once in the table")
        names.add(name.casefold())
        cells: dict[str, Cell] = {}
        for party in parties:
            cw = f"{where}.{party}"
            raw_cell = e[party]
            if isinstance(raw_cell, str):
                level = schemes[party].find(raw_cell)
                if level is None:
                    raise r.fail(cw, f"{party} has no level {raw_cell!r}",
                                 f"use a level of schemes.{party}: "
                                 + ", ".join(lv.name for lv in schemes[party].levels))
                if level.name in direct_rank[party]:
                    raise r.fail(cw, f"{party} {level.name} is already equivalent to another row",
                                 "a national level is directly equivalent to one row only; use "
                                 "{ treat_as = ... } for the other")
                direct_rank[party][level.name] = i
                cells[party] = Cell(level.name)
            elif isinstance(raw_cell, dict) and set(raw_cell) == {"treat_as"}:
                level = schemes[party].find(str(raw_cell["treat_as"]))
                if level is None:
                    raise r.fail(f"{cw}.treat_as", f"{party} has no level "
                                 f"{raw_cell['treat_as']!r}", f"name a level of schemes.{party}")
                pending_treat.append((party, i, level.name, cw))
                cells[party] = Cell(level.name, treat_as=True)
            elif raw_cell == {"no_equivalent": True} and raw_cell["no_equivalent"] is True:
                cells[party] = Cell(None)
            else:
                raise r.fail(cw, f"{raw_cell!r} is not a level",
                             f'write {party} = "LEVEL", {party} = {{ treat_as = "LEVEL" }} or '
                             f"{party} = {{ no_equivalent = true }}")
        rows.append(Row(i, name, r.string(e, "abbrev", where, default=name), cells))
    for party in parties:
        for level in schemes[party].levels:
            if level.name not in direct_rank[party]:
                raise r.fail(f"schemes.{party}", f"level {level.name!r} is missing from the "
                             "equivalence table", f"add it as {party} = \"{level.name}\" to the "
                             "[[equivalence]] row it is equivalent to")
        ranks = [direct_rank[party][lv.name] for lv in schemes[party].levels]
        if ranks != sorted(ranks):
            raise r.fail(f"schemes.{party}.levels", "the scheme's order disagrees with the "
                         "equivalence table", "list the levels lowest first, in the same order "
                         "as the [[equivalence]] rows")
    for party in parties if not r.stored else ():
        top = [row for row in rows if row.cells[party].held][-1]  # a scheme has a level
        for row in rows[:top.rank]:  # every row below the highest the party holds
            if not row.cells[party].held:
                raise r.fail(f"equivalence[{row.rank}].{party}", f"no_equivalent, yet "
                             f"{party} holds the higher row {top.name} "
                             f"({top.cells[party].level})",
                             f"a party protects a row below its own levels as the next one "
                             f"up: write {party} = {{ treat_as = \"LEVEL\" }}; no_equivalent "
                             "is for the rows above a party's highest level")
    for party, rank, target, where in pending_treat:
        if direct_rank[party][target] <= rank:
            raise r.fail(f"{where}.treat_as", f"{party} {target} is not higher than this row",
                         "treat_as must name a higher level (the next level up), never the "
                         "same or a lower one")
    return tuple(rows)


def _default_tlp(rows: tuple[Row, ...], lowest_covered: int) -> dict[str, Any]:
    level = rows[lowest_covered].name
    return {
        "clear": {"level": level, "rel_to": "any"},
        "white": {"level": level, "rel_to": "any"},
        "green": {"level": level, "rel_to": "agreement"},
        "amber": {"level": level, "rel_to": "agreement"},
        "amber+strict": {"level": level, "rel_to": "originator"},
        "red": {"level": level, "rel_to": "originator", "caveats": ["TLP-RED"]},
    }


def _default_acs(rows: tuple[Row, ...]) -> dict[str, Any]:
    names = {row.name.casefold(): row.name for row in rows}
    wanted = {"U": "unclassified", "C": "confidential", "S": "secret", "TS": "top secret"}
    return {k: {"level": names[v], "rel_to": "agreement"}
            for k, v in wanted.items() if v in names}


def _foreign(r: _Reader, raw: Any, where: str, keys: Sequence[str], rows: Mapping[str, Row],
             caveats: dict[str, Caveat], defaults: dict[str, Any]) -> dict[str, ForeignMarking]:
    given = r.table(raw, where, keys)
    out: dict[str, ForeignMarking] = {}
    for key in keys:
        if key not in given and key not in defaults:
            continue  # left unmapped: such a marking is refused with a reason
        spec = given.get(key, defaults.get(key))
        kw = f"{where}.{key}"
        m = r.table(spec, kw, ("level", "rel_to", "caveats"), ("level",))
        if not isinstance(m["level"], str) or m["level"] not in rows:
            raise r.fail(f"{kw}.level", f"{m['level']!r} is not a row of the equivalence table",
                         f"use one of: {', '.join(rows)}")
        rel = m.get("rel_to", "agreement")
        if rel not in ("any", "agreement", "originator"):
            raise r.fail(f"{kw}.rel_to", f"{rel!r} is not an option",
                         'use "any", "agreement" or "originator"')
        cav = m.get("caveats", [])
        if not isinstance(cav, list):
            raise r.fail(f"{kw}.caveats", "expected a list", 'write caveats = ["TLP-RED"]')
        for j, c in enumerate(cav):
            r.token(c, f"{kw}.caveats[{j}]")
            caveats.setdefault(c, Caveat(c, f"{where.split('.')[-1].upper()} marking {key}",
                                         None))
        out[key] = ForeignMarking(rows[m["level"]].rank, rel, frozenset(cav))
    return out


def _canonical(agreement_id: str, title: str, version: str, illustrative: bool, state: str,
               signed: dt.date | None, in_force: dt.date | None, terminated: dt.date | None,
               parties: tuple[str, ...], schemes: Mapping[str, Scheme], rows: tuple[Row, ...],
               covered: set[int], caveats: Mapping[str, Caveat],
               communities: Mapping[str, Community], rules: Rules,
               tlp: Mapping[str, ForeignMarking],
               acs: Mapping[str, ForeignMarking]) -> dict[str, Any]:
    """The agreement as plain JSON data: what the content hash is computed over."""

    def day(d: dt.date | None) -> str | None:
        return d.isoformat() if d else None

    def foreign(m: Mapping[str, ForeignMarking]) -> dict[str, Any]:
        return {k: {"level": rows[v.rank].name, "rel_to": v.rel_to,
                    "caveats": sorted(v.caveats)} for k, v in m.items()}

    return {
        "id": agreement_id, "title": title, "version": version, "illustrative": illustrative,
        "status": {"state": state, "signed": day(signed), "in_force": day(in_force),
                   "terminated": day(terminated)},
        "parties": list(parties),
        "schemes": {p: {"country": s.country, "levels": [
            {"name": lv.name, "abbrev": lv.abbrev, "romanisation": lv.romanisation,
             "gloss": lv.gloss, "classified": lv.classified, "aliases": list(lv.aliases)}
            for lv in s.levels]} for p, s in schemes.items()},
        "equivalence": [{"level": row.name, "abbrev": row.abbrev, "cells": {
            p: {"level": c.level, "treat_as": c.treat_as} for p, c in row.cells.items()}}
            for row in rows],
        "covered": sorted(rows[i].name for i in covered),
        "caveats": {n: {"title": c.title, "releasable_to":
                        sorted(c.releasable_to) if c.releasable_to else None}
                    for n, c in sorted(caveats.items())},
        "communities": {n: c.title for n, c in sorted(communities.items())},
        "rules": {"third_party_release_requires_consent": rules.third_party_consent,
                  "reclassify": rules.reclassify,
                  "breach_notice_hours": rules.breach_notice_hours,
                  "on_termination": rules.on_termination,
                  # named only when set, so an agreement without it keeps the hash it had
                  **({"release_requires_community": True}
                     if rules.release_requires_community else {})},
        "markings": {"tlp": foreign(tlp), "acs": foreign(acs)},
    }
