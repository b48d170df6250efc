"""Cryptography for intelpact: node keys, TLS certificates, signatures.

Only pyca ``cryptography`` primitives are used; nothing here is home-made.
"""

from .keys import KeyFileError, generate_signing_key, key_id, load_signing_key, public_key_b64
from .tls import TlsError, fingerprint, make_self_signed

__all__ = [
    "KeyFileError", "TlsError", "fingerprint", "generate_signing_key", "key_id",
    "load_signing_key", "make_self_signed", "public_key_b64",
]
