"""The client-side matcher: decode, hash, then run a protocol's client half.

Public API: ``Scanner`` (paths or image bytes in, one ``Verdict`` each out;
see docs/api.md), hashing (``hash_file``, ``hash_bytes``, ``hash_image``,
``hash_dihedral``), image decoding (``load_image``, ``decode_image``), the
Hamming index and hash value types (re-exported from the protocol layer, where
they live to avoid cycles), and ``HttpTransport`` for talking to a blindmatch
server.
"""

from blindmatch.protocol import ALGOS, HammingIndex, HashAlgo, HashSet, HashValue, get_algo

from .dihedral import dihedral_floats, dihedral_hashes
from .hashers import PDQ_MIN_QUALITY, HashedImage, hash_bytes, hash_dihedral, hash_file, hash_image
from .images import MAX_PIXELS, decode_image, load_image, to_rgb
from .scanner import Progress, ScanData, ScanInput, ScanItem, Scanner, Verdict
from .transport import HttpTransport, ServerError, ServerUnreachableError

__all__ = [
    "ALGOS",
    "MAX_PIXELS",
    "PDQ_MIN_QUALITY",
    "HammingIndex",
    "HashAlgo",
    "HashSet",
    "HashValue",
    "HashedImage",
    "HttpTransport",
    "Progress",
    "ScanData",
    "ScanInput",
    "ScanItem",
    "Scanner",
    "ServerError",
    "ServerUnreachableError",
    "Verdict",
    "decode_image",
    "dihedral_floats",
    "dihedral_hashes",
    "get_algo",
    "hash_bytes",
    "hash_dihedral",
    "hash_file",
    "hash_image",
    "load_image",
    "to_rgb",
]
