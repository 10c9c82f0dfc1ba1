"""Replicated 2-out-of-3 sharing and PRG-correlated randomness (Araki et al., CCS 2016).

A secret x is split as x = x0 + x1 + x2 (mod p). Party i holds the pair
``(a, b) = (x_i, x_{i+1})``; any one party sees two uniform components and learns
nothing, any two parties hold all three and learn x. That last fact is the trust
assumption of the whole protocol: an honest majority.

Correlated randomness needs no messages. Component key k_j is shared by parties
j−1 and j, so party i knows ``mine = k_i`` and ``nxt = k_{i+1}``. Then

* ``zero(label)`` = F(k_i) − F(k_{i+1}) sums to 0 over the three parties
  (the mask that makes each multiplication's outgoing element uniform);
* ``random(label)`` = (F(k_i), F(k_{i+1})) is a replicated sharing of a uniform
  value that no single party knows (the output masks).

The keys are derived per query from the pairwise channel secrets and a fresh run
id drawn by party 0 (HKDF-SHA256), so no two queries ever reuse a mask.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._field import P, Vec, prg

__all__ = ["PairKeys", "derive_component_key", "share_vector"]

_DOMAIN = b"blindmatch-mpc-v1"


def derive_component_key(pair_secret: bytes, run_id: bytes, component: int) -> bytes:
    """Per-query AES key of component ``component`` from its pair's channel secret."""
    info = _DOMAIN + b"/component-key/" + bytes([component]) + run_id
    return HKDF(algorithm=hashes.SHA256(), length=16, salt=None, info=info).derive(pair_secret)


@dataclass(frozen=True)
class PairKeys:
    """Party i's two component keys for one query: k_i (with i−1) and k_{i+1} (with i+1)."""

    mine: bytes
    nxt: bytes

    def zero(self, label: int, n: int) -> Vec:
        """This party's part of a fresh zero-sharing of ``n`` elements (values < 2p)."""
        a = np.add(prg(self.mine, label, n), np.uint32(P), dtype=np.uint32)
        a -= prg(self.nxt, label, n)
        return a

    def random(self, label: int, n: int) -> tuple[Vec, Vec]:
        """This party's pair of a replicated sharing of ``n`` uniform elements."""
        return prg(self.mine, label, n).astype(np.uint32), prg(self.nxt, label, n).astype(np.uint32)


def share_vector(x: Vec) -> tuple[Vec, Vec, Vec]:
    """Split canonical ``x`` into three uniform components (client side, ``secrets`` keyed)."""
    c0 = prg(secrets.token_bytes(16), 0, x.size).astype(np.uint32)
    c1 = prg(secrets.token_bytes(16), 0, x.size).astype(np.uint32)
    c2 = (x.astype(np.int64) - c0 - c1) % P
    return c0, c1, c2.astype(np.uint32)
