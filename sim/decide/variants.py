"""How each registered protocol is exercised: its variants and their decision functions.

Why derived from declared properties: the simulator must pick up protocols that
land after it was written. A protocol's ``matching`` (exact/fuzzy) decides the
decision function and whether multi-probe variants make sense; a learner of
``client-or-server`` yields one variant per mode. ``[protocols.NAME]`` in the
configuration can override any of this (options, server environment, variants).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from blindmatch.protocol import REGISTRY, HashAlgo, Learner, Matching, Protocol

from ..config import SimConfigError
from .rules import DecisionSpec

__all__ = ["Variant", "protocol_variants"]

_ALLOWED = {
    "probe_bits",
    "modes",
    "server_options",
    "server_env",
    "client_options",
    "radius",
    "algos",
    "verify_local",
    "verify_http",
    "lookup_fpr",
    "cost_model",
    "dihedral",
}


@dataclass(frozen=True)
class Variant:
    """One way of running a protocol (e.g. ``oprf`` with k=4 probes, ``he`` server-learns)."""

    protocol: str
    label: str
    learner: str  # who learns the verdict in this variant: client | server | nobody
    matching: str
    client_options: dict[str, Any] = field(default_factory=dict)
    server_options: dict[str, Any] = field(default_factory=dict)
    server_env: dict[str, str] = field(default_factory=dict)
    probe_bits: int = 0
    radius: int | None = None
    threshold: int = 0  # matches per account before a server-learns protocol reveals
    lookup_fpr: float = 0.0  # false-positive rate per probe of an approximate filter (oprf's GCS)
    cost_model: str = "affine"  # server CPU vs set size: "affine" (fitted) or "proportional"
    dihedral: bool = False  # PDQ only: query all 8 rotations/flips, matched if any matches

    def decision(self, algo: HashAlgo) -> DecisionSpec:
        if self.matching == Matching.FUZZY.value:
            r = self.radius if self.radius is not None else algo.default_threshold
            return DecisionSpec("fuzzy", radius=int(r), dihedral=self.dihedral)
        return DecisionSpec(
            "exact", probe_bits=self.probe_bits if algo.name == "pdq" else 0, dihedral=self.dihedral
        )

    def runs_on(self, algo: str) -> bool:
        """Dihedral variants exist for PDQ only (its transforms follow from one hash)."""
        return algo == "pdq" or not self.dihedral

    @property
    def scans_per_image(self) -> int:
        return 8 if self.dihedral else 1

    def client_options_for(self, algo: HashAlgo) -> dict[str, Any]:
        """Multi-probe uses PDQ's float values; for other algorithms the variant runs with k = 0."""
        opts = dict(self.client_options)
        if algo.name != "pdq" and "probe_bits" in opts:
            opts["probe_bits"] = 0
        return opts

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "label": self.label,
            "learner": self.learner,
            "matching": self.matching,
            "client_options": self.client_options,
            "server_options": self.server_options,
            "server_env": self.server_env,
            "probe_bits": self.probe_bits,
            "radius": self.radius,
            "threshold": self.threshold,
            "lookup_fpr": self.lookup_fpr,
            "cost_model": self.cost_model,
            "dihedral": self.dihedral,
        }


def _pconf(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    pc = dict(cfg.get("protocols", {}).get(name, {}))
    bad = set(pc) - _ALLOWED
    if bad:
        raise SimConfigError(f"protocols.{name}: unknown key(s) {sorted(bad)}; allowed {sorted(_ALLOWED)}")
    return pc


def _cost_model(pc: dict[str, Any]) -> str:
    m = str(pc.get("cost_model", "affine"))
    if m not in ("affine", "proportional"):
        raise SimConfigError(f"cost_model must be 'affine' or 'proportional', not {m!r}")
    return m


def protocol_variants(proto: Protocol, cfg: dict[str, Any]) -> list[Variant]:
    pc = _pconf(cfg, proto.name)
    exact = proto.matching == Matching.EXACT
    declared = proto.client_options_type.names()
    # multi-probe variants only for an exact protocol whose client takes probe_bits
    probing = exact and "probe_bits" in declared
    probes = [int(k) for k in pc.get("probe_bits", cfg["variants"]["probe_bits"])] if probing else [0]
    if proto.learner == Learner.CLIENT_OR_SERVER:
        modes: list[str | None] = [str(m) for m in pc.get("modes", cfg["variants"]["modes"])]
    else:
        modes = [None]
    server_options = dict(pc.get("server_options", {}))
    server_env = {str(k): str(v) for k, v in pc.get("server_env", {}).items()}
    radius = pc.get("radius")
    if radius is not None:
        server_options.setdefault("radius", int(radius))
    # a threshold protocol declares ``threshold`` among its server options (default included)
    threshold = int(proto.server_options(server_options).to_dict().get("threshold", 0) or 0)
    out = []
    for k in probes:
        for mode in modes:
            label = proto.name
            if probing and len(probes) > 1:
                label += f" k={k}"
            if mode:
                label += f" {mode}"
            # a per-query mode names who learns; otherwise the protocol's declaration does
            mode_learner = "server" if mode and mode.startswith("server") else "client"
            learner = mode_learner if mode else proto.learner.value
            # only the options this protocol declares: its client rejects any other
            opts: dict[str, Any] = {"probe_bits": k} if probing else {}
            if mode:
                opts["mode"] = mode
            if mode_learner == "server" and "allow_server_learns" in declared:
                # he server-learns is opt-in: it protects the hash against a semi-honest server only
                opts["allow_server_learns"] = True
            opts.update(pc.get("client_options", {}))
            out.append(
                Variant(
                    proto.name,
                    label,
                    learner,
                    proto.matching.value,
                    opts,
                    server_options,
                    server_env,
                    k,
                    None if radius is None else int(radius),
                    threshold,
                    float(pc.get("lookup_fpr", 0.0)),
                    _cost_model(pc),
                )
            )
    return out + _dihedral_variants(proto, out, bool(pc.get("dihedral", cfg["variants"]["dihedral"])))


def _dihedral_variants(proto: Protocol, base: list[Variant], enabled: bool) -> list[Variant]:
    """One dihedral variant per learner mode, on the most robust (most probes) base variant."""
    if not enabled or "pdq" not in proto.supported_algos:
        return []
    best: dict[str, Variant] = {}
    for v in base:
        mode = str(v.client_options.get("mode"))
        if mode not in best or v.probe_bits > best[mode].probe_bits:
            best[mode] = v
    return [replace(v, label=f"{v.label} dihedral", dihedral=True) for v in best.values()]


def all_variants(cfg: dict[str, Any]) -> list[Variant]:
    """Variants of every registered protocol, in registry-name order."""
    out: list[Variant] = []
    for name in sorted(REGISTRY):
        out.extend(protocol_variants(REGISTRY[name], cfg))
    return out
