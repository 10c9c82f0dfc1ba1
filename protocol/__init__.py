"""Private set membership protocols behind one interface, and their registry.

Importing this package registers every protocol. Public names only; modules
prefixed with ``_`` and the ``hazmat`` layer are internal.
"""

from . import he, oprf, plain, tpsi  # noqa: F401  (importing a protocol module registers it)
from .base import (
    REGISTRY,
    ClientHalf,
    Endpoint,
    Leakage,
    Learner,
    LocalTransport,
    Matching,
    Protocol,
    Query,
    Reply,
    Request,
    ScanResult,
    ServerHalf,
    Transport,
    TransportReply,
    get_protocol,
    register,
)
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .files import atomic_write, atomic_writer
from .hamming import HammingIndex, popcount64
from .hashes import ALGOS, HashAlgo, HashSet, HashValue, get_algo

__all__ = [
    "ALGOS",
    "REGISTRY",
    "ClientHalf",
    "Endpoint",
    "HammingIndex",
    "HashAlgo",
    "HashSet",
    "HashValue",
    "Leakage",
    "Learner",
    "LocalTransport",
    "Matching",
    "Protocol",
    "Query",
    "Reply",
    "Request",
    "ScanResult",
    "ServerHalf",
    "Transport",
    "TransportReply",
    "atomic_write",
    "atomic_writer",
    "get_algo",
    "get_protocol",
    "popcount64",
    "register",
    *_errors_all,
]
