"""A partner, a liaison or a holder probing the originator's controls, consent and
compromise reports (found in review: each docstring says what the node did before its
fix)."""

from __future__ import annotations

from test_consent import Trio, ask, deliver, shared, trio  # noqa: F401  (fixture)

from helpers import serving_federation


def test_a_third_party_liaison_at_the_holder_reads_nothing_without_consent(
        trio: Trio) -> None:  # noqa: F811
    """An AUS liaison officer at NZL's node is AUS: serving them a JPN object is
    releasing it to a third party, which needs JPN's consent as a push to AUS does."""
    jpn, nzl, aus = trio
    nzl.people.add("bruce", party="AUS", clearance="SECRET", roles=["analyst"])
    with serving_federation(jpn), serving_federation(nzl):
        obj = shared(jpn, nzl)
    # NZL may not push it to AUS without consent ...
    row = nzl.store.held([obj["id"]])[0]
    labels = nzl.store.labels()
    assert not nzl.federation.may_release_now(labels[row.banner_id], "AUS", row,
                                              nzl.federation.held_consents())
    # ... but its TAXII/get path serves it to an AUS national all the same
    served = nzl.get(nzl.people.as_person("bruce"), obj["id"])
    assert served == [], "an AUS liaison at NZL read JPN's object with no JPN consent"
