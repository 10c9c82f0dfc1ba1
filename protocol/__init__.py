"""Private set membership protocols behind one interface, and their registry.

Importing this package registers every protocol. Public names only; modules
prefixed with ``_`` and the ``hazmat`` layer are internal. Shared pieces every
protocol may use sit at this level: ``options`` (typed option dataclasses),
``costfloor`` (declared cost floors), ``multiprobe`` (exact-match probing).
"""

from . import he, mpc, oprf, plain, tpsi  # noqa: F401  (importing a protocol module registers it)
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
    ServerVerdict,
    Transport,
    TransportReply,
    get_protocol,
    register,
)
from .costfloor import FLOOR_METRICS, CostFloor, Floor, Term
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .files import atomic_write, atomic_writer
from .hamming import HammingIndex, popcount64
from .hashes import ALGOS, HashAlgo, HashSet, HashValue, get_algo
from .multiprobe import MAX_PROBE_BITS
from .options import NoOptions, OptionInfo, Options, option

__all__ = [
    "ALGOS",
    "FLOOR_METRICS",
    "MAX_PROBE_BITS",
    "REGISTRY",
    "ClientHalf",
    "CostFloor",
    "Endpoint",
    "Floor",
    "HammingIndex",
    "HashAlgo",
    "HashSet",
    "HashValue",
    "Leakage",
    "Learner",
    "LocalTransport",
    "Matching",
    "NoOptions",
    "OptionInfo",
    "Options",
    "Protocol",
    "Query",
    "Reply",
    "Request",
    "ScanResult",
    "ServerHalf",
    "ServerVerdict",
    "Term",
    "Transport",
    "TransportReply",
    "atomic_write",
    "atomic_writer",
    "get_algo",
    "get_protocol",
    "option",
    "popcount64",
    "register",
    *_errors_all,
]
