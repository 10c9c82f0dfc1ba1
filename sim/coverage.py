"""What a run can measure on its corpus, and a plain list of what it had to skip.

Why: a real corpus can be tiny, flat (every image below the PDQ quality gate),
a single image, or duplicates of one image. The run must still finish and
write what it measured; each number it could not measure is named here with
the reason, in ``results.json`` (``skipped``) and in the report, rather than
crashing after the measurements or printing a blank.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["corpus_skips", "split_corpus", "stage_skips"]


def split_corpus(
    usable: list[int], eligible: list[int], known: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(known, unrelated) image indices: up to ``known`` eligible images join the set, keeping
    at least two usable images unrelated when the corpus allows it."""
    k = min(known, len(eligible), max(1, len(usable) - 2)) if eligible else 0
    known_idx = np.array(eligible[:k], dtype=np.int64)
    unrelated = np.array(sorted(set(usable) - set(known_idx.tolist())), dtype=np.int64)
    return known_idx, unrelated


def _skip(what: str, why: str) -> dict[str, str]:
    return {"what": what, "why": why}


def corpus_skips(
    n_images: int,
    usable: list[int],
    eligible: list[int],
    known_idx: npt.NDArray[np.int64],
    unrelated_idx: npt.NDArray[np.int64],
    min_quality: int,
    algos: list[str],
) -> list[dict[str, str]]:
    out = []
    if not usable:
        out.append(
            _skip("every measurement on corpus images", f"none of the {n_images} files could be decoded")
        )
    elif not eligible:
        out.append(
            _skip(
                "misses on edited copies (FNMR) and the evasion search",
                f"no usable image passes the PDQ quality gate ({min_quality}), so no corpus image "
                "joins the set",
            )
        )
    if usable and len(unrelated_idx) == 0:
        out.append(
            _skip(
                "false-match rates (FMR) on unrelated images",
                f"all {len(usable)} usable image(s) are in the set; none is left as unrelated traffic",
            )
        )
    if 0 < len(usable) < 2:
        out.append(_skip("distance distribution of unrelated pairs", "fewer than two usable images"))
    elif len(usable) == 2:
        out.append(_skip("beta-binomial fit of pair distances", "one pair of images: counted, not fitted"))
    return out


def stage_skips(
    acc: dict[str, Any],
    verification: list[dict[str, Any]],
    cost_cells: list[dict[str, Any]],
    real_copies: list[dict[str, Any]] | None,
) -> list[dict[str, str]]:
    """Checks and measurements that produced nothing, with the reason each stage recorded."""
    out = []
    for r in verification:
        for kind in ("local", "http"):
            c = r.get(kind)
            if c and (c["source"] == "unavailable" or c["n"] == 0):
                out.append(
                    _skip(
                        f"real-protocol check of {r['variant']} ({r['algo']}, {kind})",
                        c["note"] or "no query to check",
                    )
                )
    by_variant: dict[str, list[str]] = {}
    for c in cost_cells:
        by_variant.setdefault(c["variant"], []).append(str(c.get("status")))
    for label, statuses in by_variant.items():
        if "ok" not in statuses:
            out.append(_skip(f"cost of {label}", statuses[0]))
    measured = {c["variant"] for c in acc["fnmr"]}
    if not cost_cells and measured:
        out.append(_skip("cost of every protocol", "no query passed the quality gate to time"))
    if real_copies is not None and all(c["n"] == 0 for c in real_copies):
        out.append(_skip("recall on real copies", "no protocol variant could scan the copies"))
    return out
