"""The published intelpact STIX extension: its definition and every marking it shapes."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import stix2validator

from intelpact.model import EXTENSION_ID, load_agreement, national_marking

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "intelpact-national-marking.schema.json").read_text())
AGREEMENTS = sorted((ROOT / "agreements").glob("*.toml"))


def test_extension_bundle_is_valid_stix() -> None:
    bundle = json.loads((ROOT / "schemas" / "intelpact-extension-bundle.json").read_text())
    result = stix2validator.validate_parsed_json(bundle)
    assert result.is_valid, [str(e) for e in result.errors]
    ext = next(o for o in bundle["objects"] if o["type"] == "extension-definition")
    assert ext["id"] == EXTENSION_ID
    assert ext["extension_types"] == ["property-extension"]


@pytest.mark.parametrize("path", AGREEMENTS, ids=lambda p: p.stem)
def test_every_national_marking_matches_schema_and_is_valid_stix(path: Path) -> None:
    agreement = load_agreement(path)
    made = 0
    for party in agreement.parties:
        for level in agreement.schemes[party].levels:
            rank = agreement.rank_of(party, level.name)
            rel = [p for p in agreement.parties if agreement.rows[rank].cells[p].held]
            marking = national_marking(agreement, party, level.name, rel_to=rel,
                                       communities=list(agreement.communities)[:1])
            jsonschema.validate(marking["extensions"][EXTENSION_ID], SCHEMA)
            result = stix2validator.validate_parsed_json(marking)
            assert result.is_valid, [str(e) for e in result.errors]
            made += 1
    assert made == sum(len(s.levels) for s in agreement.schemes.values())


def test_schema_rejects_unknown_property() -> None:
    agreement = load_agreement(ROOT / "agreements" / "jpn-nzl.toml")
    props = dict(national_marking(agreement, "NZL", "SECRET")["extensions"][EXTENSION_ID])
    props["x_extra"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(props, SCHEMA)
