"""Verifiable database: curator-signed hash lists, a two-source rule, attested root digests.

Why: the client cannot see the set, so a server could slip in hashes of political
images (database poisoning). Apple's design admits a hash only if two child-safety
organisations in different jurisdictions supplied it, and publishes a root hash.
Here each curator signs its list (Ed25519 from ``cryptography``); ``select_hashes``
keeps a hash only when ≥ k curators from ≥ k distinct jurisdictions signed it; and
curators sign the resulting set's root digest so anyone holding their public keys
can check a served set against what they approved (``verify_attestations``).

What it does not do: prove that a server's *blinded* artefacts (OPRF filter, TPSI
table) were derived from the attested set. That needs the zero-knowledge or
threshold-evaluation machinery of Scheffler, Kulshrestha and Mayer (IEEE S&P 2023);
see docs/threat-model.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import BadHashError, CorruptStoreError, SignatureError
from .hashes import HashAlgo, HashValue

__all__ = [
    "Attestation",
    "SignedList",
    "curator_keygen",
    "select_hashes",
    "verify_attestations",
]

_LIST_DST = b"blindmatch-curation-v1|list|"
_ROOT_DST = b"blindmatch-curation-v1|root|"


def curator_keygen() -> tuple[bytes, bytes]:
    """(private raw 32 bytes, public raw 32 bytes)."""
    sk = Ed25519PrivateKey.generate()
    pk = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    sk_raw = sk.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return sk_raw, pk


def _load_pk(raw: bytes) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise SignatureError("malformed curator public key") from None


def _list_digest(algo: HashAlgo, hashes: Sequence[HashValue], curator: str, jurisdiction: str) -> bytes:
    h = hashlib.sha256()
    h.update(_LIST_DST + algo.name.encode() + b"|" + curator.encode() + b"|" + jurisdiction.encode() + b"|")
    for raw in sorted({v.raw for v in hashes}):
        h.update(raw)
    return h.digest()


@dataclass(frozen=True)
class SignedList:
    """One curator's submission: its hashes, signed with its Ed25519 key."""

    curator: str
    jurisdiction: str
    algo: HashAlgo
    hashes: tuple[HashValue, ...]
    public_key: bytes
    signature: bytes

    @classmethod
    def sign(
        cls, algo: HashAlgo, hashes: Iterable[HashValue], curator: str, jurisdiction: str, private_key: bytes
    ) -> SignedList:
        hs = tuple(sorted({v for v in hashes}, key=lambda v: v.raw))
        if any(v.algo != algo for v in hs):
            raise BadHashError("a signed list must hold one hash algorithm")
        sk = Ed25519PrivateKey.from_private_bytes(private_key)
        pk = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        sig = sk.sign(_list_digest(algo, hs, curator, jurisdiction))
        return cls(curator, jurisdiction, algo, hs, pk, sig)

    def verify(self, trusted: dict[str, bytes] | None = None) -> None:
        """Check the signature (and, if given, that the key is the curator's pinned key)."""
        if trusted is not None and trusted.get(self.curator) != self.public_key:
            raise SignatureError(f"curator {self.curator!r} is not trusted with this key")
        try:
            _load_pk(self.public_key).verify(
                self.signature, _list_digest(self.algo, self.hashes, self.curator, self.jurisdiction)
            )
        except InvalidSignature:
            raise SignatureError(f"list signature of curator {self.curator!r} does not verify") from None

    def to_json(self) -> str:
        return json.dumps({
            "format": 1, "curator": self.curator, "jurisdiction": self.jurisdiction,
            "algo": self.algo.name, "hashes": [v.hex for v in self.hashes],
            "public_key": base64.b64encode(self.public_key).decode(),
            "signature": base64.b64encode(self.signature).decode(),
        })

    @classmethod
    def from_json(cls, text: str, algo: HashAlgo) -> SignedList:
        try:
            d = json.loads(text)
            if not isinstance(d, dict) or not isinstance(d.get("hashes"), list):
                raise CorruptStoreError("signed list is not a JSON object with a list of hashes")
            if d.get("format") != 1 or d["algo"] != algo.name:
                raise CorruptStoreError("signed list has an unknown format or another algorithm")
            return cls(
                str(d["curator"]), str(d["jurisdiction"]), algo,
                tuple(algo.from_hex(h) for h in d["hashes"]),
                base64.b64decode(d["public_key"], validate=True),
                base64.b64decode(d["signature"], validate=True),
            )
        except (ValueError, KeyError, TypeError) as e:
            if isinstance(e, BadHashError | CorruptStoreError):
                raise
            raise CorruptStoreError(f"malformed signed list ({type(e).__name__})") from None


def select_hashes(lists: Sequence[SignedList], min_sources: int = 2,
                  trusted: dict[str, bytes] | None = None) -> tuple[list[HashValue], dict[str, int]]:
    """Hashes vouched for by ≥ ``min_sources`` curators in as many distinct jurisdictions.

    Every list's signature is verified first; one bad list aborts the build.
    Returns the admitted hashes and counts of admitted/rejected for the report.
    """
    for sl in lists:
        sl.verify(trusted)
    vouchers: dict[bytes, set[tuple[str, str]]] = {}
    by_raw: dict[bytes, HashValue] = {}
    for sl in lists:
        for v in sl.hashes:
            vouchers.setdefault(v.raw, set()).add((sl.curator, sl.jurisdiction))
            by_raw[v.raw] = v
    admitted: list[HashValue] = []
    for raw, who in vouchers.items():
        curators = {c for c, _ in who}
        jurisdictions = {j for _, j in who}
        if len(curators) >= min_sources and len(jurisdictions) >= min_sources:
            admitted.append(by_raw[raw])
    admitted.sort(key=lambda v: v.raw)
    return admitted, {"admitted": len(admitted), "rejected": len(vouchers) - len(admitted)}


@dataclass(frozen=True)
class Attestation:
    """A curator's signature over a set's root digest (SHA-256 of hashes.bin)."""

    curator: str
    public_key: bytes
    signature: bytes

    @staticmethod
    def message(root_digest_hex: str, count: int, algo: str) -> bytes:
        return _ROOT_DST + f"{algo}|{count}|{root_digest_hex}".encode()

    @classmethod
    def sign(
        cls, curator: str, private_key: bytes, root_digest_hex: str, count: int, algo: str
    ) -> Attestation:
        sk = Ed25519PrivateKey.from_private_bytes(private_key)
        pk = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(curator, pk, sk.sign(cls.message(root_digest_hex, count, algo)))

    def to_dict(self) -> dict[str, str]:
        return {
            "curator": self.curator,
            "public_key": base64.b64encode(self.public_key).decode(),
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> Attestation:
        try:
            return cls(
                str(d["curator"]),
                base64.b64decode(d["public_key"], validate=True),
                base64.b64decode(d["signature"], validate=True),
            )
        except (KeyError, TypeError, ValueError):
            raise CorruptStoreError("malformed attestation") from None


def verify_attestations(
    attestations: Sequence[Attestation],
    root_digest_hex: str,
    count: int,
    algo: str,
    trusted: dict[str, bytes],
    threshold: int,
) -> list[str]:
    """Return the trusted curators whose signature over this root verifies; raise if < threshold."""
    ok: set[str] = set()
    msg = Attestation.message(root_digest_hex, count, algo)
    for a in attestations:
        if trusted.get(a.curator) != a.public_key:
            continue
        try:
            _load_pk(a.public_key).verify(a.signature, msg)
        except InvalidSignature:
            continue
        ok.add(a.curator)
    if len(ok) < threshold:
        raise SignatureError(f"only {len(ok)} of the required {threshold} curators attest this set")
    return sorted(ok)
