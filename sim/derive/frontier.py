"""The trade-off frontier: every protocol variant as one point of recall against cost and privacy.

Why one table: a policy reader needs one picture to quote — how many edited
copies a design finds, what it costs the server per query at 10⁶ entries and
on the wire, and what it gives up (who learns the verdict, under which
adversary model and trust assumption, and how much of the hash is revealed).
Rows come from the headline, so every registered protocol and every variant
(multi-probe, modes, and any variant later added such as dihedral matching) is
a point. Real-copy recall is included whenever the results carry real copy
pairs (``accuracy.real_copies``).
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from blindmatch.client import get_algo

from ..stats import rate

__all__ = ["FRONTIER_SET_SIZE", "frontier_rows", "protocol_facts"]

FRONTIER_SET_SIZE = 1_000_000


def protocol_facts() -> dict[str, dict[str, str]]:
    """Adversary model, trust assumption and revealed bits per protocol name (packaged data)."""
    text = resources.files("blindmatch.sim.derive").joinpath("protocol_facts.toml").read_text("utf-8")
    return {k: {str(a): str(b) for a, b in v.items()} for k, v in tomllib.loads(text).items()}


def _recall(cell: dict[str, Any] | None) -> dict[str, Any] | None:
    """Recall = 1 − FNMR, with the interval turned round."""
    if not cell or not cell.get("n") or cell.get("rate") is None:
        return None
    lo, hi = cell["wilson"]
    return {"rate": 1.0 - cell["rate"], "low": 1.0 - hi, "high": 1.0 - lo, "n": cell["n"]}


def _real_recall(acc: dict[str, Any], label: str, algo: str) -> dict[str, Any] | None:
    """Pooled recall on real copy pairs, if the run was given any."""
    cells = [
        c
        for c in acc.get("real_copies", [])
        if c.get("variant") == label and c.get("algo") == algo and c.get("n")
    ]
    if not cells:
        return None
    k, n = sum(int(c["k"]) for c in cells), sum(int(c["n"]) for c in cells)
    return _recall(rate(k, n))


def _revealed(template: str, variant: dict[str, Any], algo: str) -> str:
    return template.format(bits=get_algo(algo).bits, probes=2 ** int(variant.get("probe_bits", 0)))


def frontier_rows(
    headline: list[dict[str, Any]],
    acc: dict[str, Any],
    variants: dict[str, dict[str, Any]],
    default_algo: str,
) -> list[dict[str, Any]]:
    """One point per headline row, on the row's hash (``default_algo`` for rows without one);
    ``variants`` maps a label to its ``Variant.to_dict()``."""
    facts = protocol_facts()
    missing = "not declared (add it to sim/derive/protocol_facts.toml)"
    rows = []
    for h in headline:
        f = facts.get(h["protocol"], {})
        v = variants.get(h["variant"], {})
        algo = h.get("algo", default_algo)
        cpu = h["server_cpu_1e6"]
        rows.append(
            {
                "protocol": h["protocol"],
                "variant": h["variant"],
                "algo": algo,
                "recall_everyday": _recall(h["fnmr_everyday"]),
                "recall_real_copies": _real_recall(acc, h["variant"], algo),
                "server_cpu_ms_at_1e6": cpu["ms"],
                "server_cpu_basis": cpu["basis"],
                "server_cpu_note": cpu["note"],
                "bytes_per_query": h["bytes_per_image"],
                "learner": h["learner"],
                "adversary": f.get("adversary", missing)
                + (
                    "; this variant: hash hidden only from a server that follows the protocol"
                    if h.get("server_trust") == "semi-honest"
                    else ""
                ),
                "trust": f.get("trust", missing),
                "revealed": _revealed(f["revealed"], v, algo) if "revealed" in f else missing,
            }
        )
    return rows
