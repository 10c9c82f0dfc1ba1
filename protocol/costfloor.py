"""A protocol's physical cost floor: the work no implementation of it can skip.

Why declared by the protocol: the benchmarks report every measured figure next
to a lower bound, and the bound is a fact about the protocol (how many scalar
multiplications a query needs, how many bytes must cross the wire), not about
the benchmark. The protocol counts; the benchmark measures each counted
primitive on the same machine in the same run and multiplies. So a ``Floor``
is a sum of ``Term``s, each ``count × seconds(primitive)``, or a plain
constant for byte floors.

Primitive names form a small vocabulary the benchmark knows how to measure
(bench/micro.py): ``r255.<op>`` for libsodium ristretto255 calls
(``hash_to_group``, ``scalar_mult``, ``base_mult``, ``add``, ``hash_to_scalar``,
…), ``stream_pass.<n>x<words>`` for one XOR pass over n hashes of ``words``
64-bit words (the memory floor of a plaintext scan), and ``seal.<set>.<op>``
for SEAL BFV operations (``ptxct_ntt``, ``encrypt``, ``decrypt``) at the
parameter set described in ``CostFloor.primitive_params["seal"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FLOOR_METRICS", "CostFloor", "Floor", "Term"]

# the figures a floor may bound, as the benchmarks name them
FLOOR_METRICS = ("setup_s", "download_bytes", "client_cpu_s", "server_cpu_s", "bytes_per_query")


@dataclass(frozen=True)
class Term:
    """``count`` calls of ``primitive``; an empty primitive makes ``count`` the value itself."""

    count: float
    primitive: str = ""


@dataclass(frozen=True)
class Floor:
    """One figure's bound and the formula that explains it, in words.

    ``parallel`` marks work that spreads over all cores (set-up), so the bound
    divides by the core count of the machine that measured it.
    """

    terms: tuple[Term, ...]
    formula: str
    parallel: bool = False

    @classmethod
    def constant(cls, value: float, formula: str) -> Floor:
        return cls((Term(float(value)),), formula)

    @property
    def primitives(self) -> tuple[str, ...]:
        return tuple(t.primitive for t in self.terms if t.primitive)

    def value(self, seconds: Callable[[str], float], cores: int = 1) -> float:
        """The bound, given each primitive's measured cost (median seconds per call)."""
        total = sum(t.count * (seconds(t.primitive) if t.primitive else 1.0) for t in self.terms)
        return total / max(1, cores) if self.parallel else total


@dataclass(frozen=True)
class CostFloor:
    """Lower bounds per figure (``None`` = no bound claimed) and the facts they rest on.

    ``params`` names the protocol parameters the counts depend on (e.g. the
    filter's false-positive rate, the cuckoo hash count, the BFV parameter
    set) so a reader can check the arithmetic; ``primitive_params`` carries
    what the benchmark needs to measure a family of primitives (``"seal"``:
    name, poly_degree, coeff_bits, plain_modulus).
    """

    setup_s: Floor | None = None
    download_bytes: Floor | None = None
    client_cpu_s: Floor | None = None
    server_cpu_s: Floor | None = None
    bytes_per_query: Floor | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    primitive_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def floors(self) -> dict[str, Floor]:
        """The declared floors by figure name (``FLOOR_METRICS`` order)."""
        out = {m: getattr(self, m) for m in FLOOR_METRICS}
        return {m: f for m, f in out.items() if f is not None}

    @property
    def primitives(self) -> tuple[str, ...]:
        """Every primitive any floor counts, once each, in first-use order."""
        seen: dict[str, None] = {}
        for f in self.floors().values():
            seen.update(dict.fromkeys(f.primitives))
        return tuple(seen)
