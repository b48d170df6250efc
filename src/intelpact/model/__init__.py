"""The core model: agreements, markings, labels and access decisions.

Pure and fast; it reads only the agreement file it is handed and imports
nothing else of intelpact's but the error base class.
"""

from .agreement import Agreement, load_agreement, parse_agreement
from .decisions import ConsentToken, Decision, PartnerNode, Person, Policy, Portions
from .errors import AgreementError, LabelError, MarkingError
from .labels import Label, banner, join_all, portion_mark
from .markings import (
    EXTENSION_ID,
    LabelPart,
    Markings,
    ObjectLabels,
    national_marking,
    parse_marking,
)

__all__ = [
    "EXTENSION_ID", "Agreement", "AgreementError", "ConsentToken", "Decision", "Label",
    "LabelError", "LabelPart", "MarkingError", "Markings", "ObjectLabels", "PartnerNode",
    "Person", "Policy", "Portions", "banner", "join_all", "load_agreement",
    "national_marking", "parse_agreement", "parse_marking", "portion_mark",
]
