"""Access decisions: may this principal read this, may this node release that.

Every decision is a value: allowed or not, the rule that decided, and a reason
a security officer can read. Deny is the default: a rule that cannot be shown to
hold denies. Rank, role and admin status never enter a decision.

Read (DESIGN.md rule 2), checked in this order, the first failure decides:
1. the label is under the agreement this policy applies;
2. the person's party has an equivalent of the label's level;
3. the person's clearance dominates the level (as the party protects it: a
   "treat as" row needs the higher national level);
4. the person's nationality is in REL TO (the originator always is);
5. the person holds every caveat;
6. the person belongs to a community in every community clause.

Release to a partner node (rules 1, 3 and 7): the agreement is in force (its state
in-force and its date of entry into force come, in UTC), the
partner is a party, the level is covered, the partner has an equivalent, the
partner is in REL TO, every caveat may go to the partner, every community is one
the agreement carries (and there is at least one when the agreement's rules say
``release_requires_community``), and every party whose information the object
holds, other than us and the partner, gave consent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .agreement import Agreement
from .echo import first, shown
from .errors import LabelError
from .labels import Label, rel_to_order
from .markings import ObjectLabels

ROLES = ("analyst", "publisher", "security-officer", "operator")


@dataclass(frozen=True, slots=True)
class Decision:
    """Allow or deny, the rule that decided, and the reason in plain words."""

    allowed: bool
    rule: str
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True)
class Person:
    """A person of a node. Build with :meth:`Policy.person` so the clearance is checked."""

    name: str
    party: str
    clearance: str  # in the person's national words
    clearance_rank: int
    caveats: frozenset[str] = frozenset()
    communities: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    _hash: int = field(init=False, compare=False, repr=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.name, self.party, self.clearance_rank,
                                                self.caveats, self.communities, self.roles)))

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True, slots=True)
class PartnerNode:
    """A partner nation's node, acting under an agreement."""

    party: str
    agreement: str


@dataclass(frozen=True, slots=True)
class ConsentToken:
    """An originator's permission for one onward release (DESIGN.md rule 3).

    The signature is checked by the crypto layer before a token reaches a
    decision; the model checks its scope. ``objects`` maps object ids to the
    versions (``modified``) covered; an empty version set covers every version.
    ``hashes`` maps object ids to {version: body hash}: the content of each version
    the originator consents to (tokens made before hashes were named have none).
    """

    token_id: str
    agreement: str
    originator: str
    holder: str
    recipient: str
    objects: Mapping[str, frozenset[str]]
    purpose: str
    issued: dt.datetime
    expires: dt.datetime
    signature: str = ""
    hashes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def covers(self, object_id: str, version: str | None) -> bool:
        versions = self.objects.get(object_id)
        if versions is None:
            return False
        return not versions or (version is not None and version in versions)

    def names(self, object_id: str, version: str | None, body_hash: str) -> bool:
        """True when the token covers this version and names ``body_hash`` as its
        content: what the originator consented to is this very body."""
        return self.covers(object_id, version) and version is not None and \
            self.hashes.get(object_id, {}).get(version) == body_hash


@dataclass(frozen=True)
class Portions:
    """A read decision for a whole object: the base decision and what is withheld."""

    decision: Decision
    withheld: tuple[str, ...]
    reasons: Mapping[str, Decision]


ALLOW_READ = "read"


class Policy:
    """Decisions under one agreement. Read decisions are cached per distinct label.

    ``party``: the node's, where the policy decides for a node. A person of another
    party there (a liaison) is then served no third party's material where the agreement
    needs the originator's consent to release it: serving them would release it to
    their party, which a push could not do either."""

    def __init__(self, agreement: Agreement, party: str | None = None) -> None:
        self.agreement = agreement
        self.party = party
        self._read_cache: dict[Person, dict[Label, Decision]] = {}

    # -- principals --------------------------------------------------------------------
    def person(self, name: str, party: str, clearance: str, *, caveats: Iterable[str] = (),
               communities: Iterable[str] = (), roles: Iterable[str] = ()) -> Person:
        """A person, with the clearance given in their national words or romanisation.

        Raises :class:`ValueError` naming the fix."""
        a = self.agreement
        caveats, communities, roles = frozenset(caveats), frozenset(communities), frozenset(roles)
        if party not in a.parties:
            raise ValueError(f"{party} is not a party to agreement {a.id}; "
                             f"use one of {', '.join(a.parties)}")
        try:
            rank = a.rank_of(party, clearance)
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None
        level = a.level(party, clearance)
        unknown = sorted(c for c in caveats if c not in a.caveats and not c.startswith("ACS-"))
        if unknown:
            raise ValueError(f"caveat {unknown[0]!r} is not known to agreement {a.id}; "
                             f"known caveats: {', '.join(a.caveats) or 'none'}")
        unknown = sorted(c for c in communities if c not in a.communities
                         and not c.startswith("ACS-"))
        if unknown:
            raise ValueError(f"community {unknown[0]!r} is not known to agreement {a.id}; "
                             f"known communities: {', '.join(a.communities) or 'none'}")
        bad_roles = sorted(set(roles) - set(ROLES))
        if bad_roles:
            raise ValueError(f"unknown role {bad_roles[0]!r}; roles are: {', '.join(ROLES)}")
        for caveat in caveats:
            known = a.caveats.get(caveat)
            if known is not None and known.releasable_to is not None and \
                    party not in known.releasable_to:
                raise ValueError(f"a {party} national cannot hold {caveat} "
                                 f"({known.title})")
        return Person(name, party, level.name, rank, caveats, communities, roles)

    # -- reading -----------------------------------------------------------------------
    def may_read(self, person: Person, label: Label) -> Decision:
        """May ``person`` read what carries ``label``? Cached per (person, label)."""
        per_person = self._read_cache.get(person)
        if per_person is None:
            per_person = self._read_cache[person] = {}
        decision = per_person.get(label)
        if decision is None:
            decision = per_person[label] = self._decide_read(person, label)
        return decision

    def _decide_read(self, person: Person, label: Label) -> Decision:
        a = self.agreement
        if label.agreement != a.id:
            return Decision(False, "agreement", f"the object is marked under agreement "
                            f"{label.agreement}, not {a.id}")
        row = a.rows[label.rank]
        required = a.required_rank(person.party, label.rank)
        if required is None:
            return Decision(False, "equivalence", f"{person.party} has no equivalent of "
                            f"{row.name} under {a.id}")
        if person.clearance_rank < required:
            need = a.words(person.party, label.rank)
            need_words = need.name if need else row.name
            held = a.rows[person.clearance_rank].name
            return Decision(False, "clearance", f"clearance {_say(person.clearance, held)} "
                            f"does not dominate {_say(need_words, row.name)}")
        if label.rel_to is not None and person.party not in label.rel_to:
            return Decision(False, "rel-to", f"{person.party} not in REL TO "
                            f"{', '.join(rel_to_order(label)) or 'NONE'}")
        missing = sorted(label.caveats - person.caveats)
        if missing:
            return Decision(False, "caveat", f"caveat {', '.join(missing)} not held")
        for clause in sorted(label.communities, key=sorted):
            if not clause & person.communities:
                return Decision(False, "community", f"not in community "
                                f"{' or '.join(sorted(clause))}")
        third = sorted(label.sources - {self.party, person.party}) if a.rules.third_party_consent \
            and self.party not in (None, person.party) else []  # a liaison's: a release
        if third:
            return Decision(False, "third-party", f"{', '.join(third)}'s material, held by "
                            f"{self.party}: {person.party} nationals read it at "
                            f"{person.party}'s node, once {', '.join(third)} consents to "
                            f"its release to {person.party}")
        return Decision(True, ALLOW_READ, f"{person.name} ({person.party}, "
                        f"{person.clearance}) may read {row.name}")

    def acts_for_node(self, person: Person, act: str) -> Decision:
        """May ``person`` do ``act`` in the node's name: decide as originator (consent,
        recall, reclassification) or speak in a compromise report, each signed with the
        node's key, or administer its store (delete objects over TAXII)? Only a person of
        the node's party: a liaison at a node is a guest of it, and a partner's national
        must not decide for the originator what is done with its information (nor for a
        holder what it reports, or what it keeps)."""
        if self.party is None or person.party == self.party:
            return Decision(True, "party", f"{person.name} is a {person.party} national")
        return Decision(False, "party", f"{person.name} is a {person.party} national: only "
                        f"{self.party}'s people {act} for {self.party}'s node")

    def read_object(self, person: Person, labels: ObjectLabels) -> Portions:
        """Decide for a whole object: the base, and each granular-marked portion."""
        base = self.may_read(person, labels.base)
        if not base.allowed:
            return Portions(base, (), {})
        withheld: list[str] = []
        reasons: dict[str, Decision] = {}
        for selector, label in labels.portions.items():
            d = self.may_read(person, label)
            if not d.allowed:
                withheld.append(selector)
                reasons[selector] = d
        return Portions(base, tuple(sorted(withheld)), reasons)

    # -- releasing -----------------------------------------------------------------------
    def may_release(self, label: Label, partner: PartnerNode, *, holder: str, object_id: str,
                    version: str | None = None, consents: Iterable[ConsentToken] = (),
                    now: dt.datetime | None = None) -> Decision:
        """May the node of party ``holder`` send this object to ``partner``?"""
        a = self.agreement
        if now is None:
            now = dt.datetime.now(dt.UTC)
        if label.agreement != a.id or partner.agreement != a.id:
            return Decision(False, "agreement", f"the object or partner is under another "
                            f"agreement than {a.id}")
        day = now.astimezone(dt.UTC).date()
        if a.state == "draft" or a.terminated_on(day):
            return Decision(False, "agreement-state", f"agreement {a.id} is {a.state}: "
                            "no exchange")
        if not a.in_force_on(day):
            return Decision(False, "agreement-state", f"agreement {a.id} enters into force "
                            f"on {a.in_force}: no exchange before that day")
        shape = self._exchanged(label, partner.party, holder)
        if shape is not None:
            return shape
        third = sorted(label.sources - {holder, partner.party})
        if third and a.rules.third_party_consent:
            for originator in third:
                ok = self._consent(originator, holder, partner.party, object_id, version,
                                   consents, now)
                if not ok.allowed:
                    return ok
            return Decision(True, "release", f"release to {partner.party} with the consent of "
                            f"{', '.join(third)}")
        return Decision(True, "release", f"{partner.party} may receive "
                        f"{a.rows[label.rank].name}")

    def _exchanged(self, label: Label, party: str, holder: str) -> Decision | None:
        """The rules of release that are about what is exchanged, not when: may the node of
        ``holder`` pass ``label`` to ``party``, and ``party`` protect it (a party of the
        agreement, not the holder, the row covered, an equivalent, in REL TO, every caveat
        releasable to it, every community known)? None where they hold, else the denial."""
        a = self.agreement
        if party not in a.parties:
            return Decision(False, "party", f"{party} is not a party to {a.id}")
        if holder not in a.parties:
            return Decision(False, "party", f"{holder} is not a party to {a.id}")
        if party == holder:
            return Decision(False, "party", f"{holder} does not release to itself")
        row = a.rows[label.rank]
        if label.rank not in a.covered:
            return Decision(False, "covered", f"{row.name} is not covered by agreement {a.id}")
        if row.cells[party].level is None:
            return Decision(False, "equivalence", f"{party} has no equivalent of "
                            f"{row.name} under {a.id}")
        if label.rel_to is not None and party not in label.rel_to:
            return Decision(False, "rel-to", f"{party} not in REL TO "
                            f"{', '.join(rel_to_order(label)) or 'NONE'}")
        for caveat in sorted(label.caveats):
            known = a.caveats.get(caveat)
            if known is None:
                return Decision(False, "caveat", f"caveat {caveat} is not known to {a.id}: "
                                "it cannot be released")
            if known.releasable_to is not None and party not in known.releasable_to:
                return Decision(False, "caveat", f"caveat {caveat} is not releasable to "
                                f"{party}")
        for clause in label.communities:
            unknown = sorted(c for c in clause if c not in a.communities)
            if unknown:
                return Decision(False, "community", f"community {unknown[0]} is not known to "
                                f"{a.id}: it cannot be released")
        if not label.communities and a.rules.release_requires_community:
            return Decision(False, "community", f"{a.id} releases only its communities' "
                            f"material ({', '.join(a.communities)}): the object names no "
                            "community")
        return None

    def may_keep(self, label: Label, party: str, *, originator: str, object_id: str,
                 version: str | None = None, now: dt.datetime | None = None) -> Decision:
        """May the node of ``party`` keep, under ``label`` (its new label, once
        ``originator`` reclassified it), an object it received from ``originator``? While
        the agreement is in force: as the originator may release it to that node
        (:meth:`may_release`). After a termination that says ``continue-protection``, the
        protection continues and so does the holding: kept, as long as the node can still
        protect the new label (every rule of release about what is exchanged, rule
        ``keep``), where a release decision would refuse it only because the agreement
        ended (from its date of termination, UTC; before it, the agreement is in force). A
        termination that says ``destroy`` or ``return`` keeps nothing."""
        a = self.agreement
        if now is None:
            now = dt.datetime.now(dt.UTC)
        if label.agreement == a.id and a.terminated_on(now.astimezone(dt.UTC).date()) and \
                a.rules.on_termination == "continue-protection":
            shape = self._exchanged(label, party, originator)
            if shape is not None:
                return shape
            return Decision(True, "keep", f"{party} keeps {a.rows[label.rank].name}: "
                            f"protection continues after {a.id}'s termination on "
                            f"{a.terminated}")
        return self.may_release(label, PartnerNode(party, a.id), holder=originator,
                                object_id=object_id, version=version, now=now)

    def _consent(self, originator: str, holder: str, recipient: str, object_id: str,
                 version: str | None, consents: Iterable[ConsentToken],
                 now: dt.datetime) -> Decision:
        problems: list[str] = []
        for token in consents:
            if token.originator != originator:
                continue
            name = shown(token.token_id)  # a partner's: shown short
            if token.agreement != self.agreement.id:
                problems.append(f"consent {name} is under another agreement")
            elif token.holder != holder or token.recipient != recipient:
                problems.append(f"consent {name} is for {shown(token.holder)} to "
                                f"{shown(token.recipient)}")
            elif not token.covers(object_id, version):
                problems.append(f"consent {name} does not cover {object_id}")
            elif not token.issued <= now < token.expires:
                problems.append(f"consent {name} is not valid now (valid from "
                                f"{token.issued.isoformat()} until {token.expires.isoformat()})")
            else:
                return Decision(True, "consent", f"consent {name} from {originator}")
        # a count and the first few: a refusal per object must not grow with the tokens sent
        detail = f" ({first(problems, '; ', cut=False)})" if problems else ""
        return Decision(False, "consent", f"{recipient} is a third party to {object_id} "
                        f"originated by {originator}; no consent{detail}")

    def publishes_here(self, person: Person) -> Decision:
        """May ``person`` publish anything at this node? Only a person of the node's party
        (the first rule of :meth:`check_publish`; on its own for what has no label to
        check, a TLP or statement marking-definition)."""
        if self.party is not None and person.party != self.party:
            return Decision(False, "party", f"{person.name} is a {person.party} national at "
                            f"{self.party}'s node: only {self.party}'s people publish at "
                            f"{self.party}'s node; publish {person.party}'s information at "
                            f"{person.party}'s node")
        return Decision(True, "publish", f"{person.name} is a {person.party} national")

    def check_publish(self, person: Person, label: Label) -> Decision:
        """May ``person`` publish something carrying ``label``?

        They must be able to read it themselves (so never above their clearance),
        and REL TO may only name parties of the agreement. A person publishes
        only what their own party originates, and only at their own party's node
        (decided first): what is published at a node is signed by its key and goes out
        from it as its party's node's, so a liaison officer of another party posted
        there publishes nothing, whatever they may read."""
        here = self.publishes_here(person)
        if not here.allowed:
            return here
        if label.originator != person.party:
            return Decision(False, "originator", f"a {person.party} person cannot publish "
                            f"information originated by {label.originator}")
        if label.rel_to is not None:
            outside = sorted(label.rel_to - set(self.agreement.parties))
            if outside:
                return Decision(False, "rel-to", f"REL TO {', '.join(outside)} is beyond "
                                f"agreement {self.agreement.id}")
        try:
            decision = self.may_read(person, label)
        except LabelError as exc:
            return Decision(False, "label", str(exc))
        if not decision.allowed:
            return Decision(False, decision.rule, f"cannot publish what you may not read: "
                            f"{decision.reason}")
        return Decision(True, "publish", f"{person.name} may publish "
                        f"{self.agreement.rows[label.rank].name}")


def _say(national: str, shared: str) -> str:
    return national if national == shared else f"{national} ({shared})"
