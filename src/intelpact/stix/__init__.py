"""STIX 2.1 handling: fast validation of objects on the ingest path."""

from .validate import StixValidationError, validate_bundle, validate_object

__all__ = ["StixValidationError", "validate_bundle", "validate_object"]
