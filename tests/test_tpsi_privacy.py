"""Privacy claims of tpsi, tested: below t a real match and a synthetic voucher look alike.

The server's per-voucher view is: the voucher bytes (size, points, ciphertexts),
whether the outer layer opens, and for opened vouchers the inner layer
(x, share y, detection vector, AD ciphertext). We draw many real matching
vouchers spread over accounts that each stay below t, and as many synthetic
ones, and compare the two samples with two-sample tests. A power check shows
the same tests do reject a slightly biased junk distribution, so a pass is
evidence, not a test that cannot fail.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from blindmatch.protocol.hazmat import dhf, shamir
from blindmatch.protocol.tpsi import TPSI, TableMsg
from blindmatch.protocol.tpsi._core import (
    AccountSecrets,
    cuckoo_item,
    make_voucher,
    open_outer,
    parse_inner,
)
from scipy.stats import chi2_contingency, ks_2samp

from blindmatch.corpus import random_set

T, K, AD_MAX = 8, 16, 32
N = 700  # vouchers per sample
ALPHA_LEVEL = 1e-4  # per test; ~10 tests -> ~1e-3 chance of a spurious failure


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    hs = random_set(200, seed=None)
    srv = TPSI.open_server(
        hs,
        tmp_path_factory.mktemp("priv"),
        {"threshold": T, "dhf_dim": K, "ad_max": AD_MAX, "reveal_mode": "manual"},
    )
    m, table = srv.manifest, TableMsg.from_bytes(srv.table_bytes)
    items = [cuckoo_item(1, v.raw) for v in hs.values()]
    out: dict[str, list[dict[str, Any]]] = {"real": [], "synthetic": []}
    for kind in out:
        acct, acc, used = None, b"", 0
        for i in range(N):
            if acct is None or used == T - 1:  # a fresh account every t-1 vouchers
                acct = AccountSecrets.derive(secrets.token_bytes(32), T, K)
                acc, used = secrets.token_hex(8).encode(), 0
            used += 1
            item = (
                items[i % len(items)] if kind == "real" else cuckoo_item(1, secrets.token_bytes(32))
            )
            ad = secrets.token_bytes(secrets.randbelow(AD_MAX + 1))
            v, _ = make_voucher(m, table, acct, acc, item, ad, synthetic=(kind == "synthetic"))
            raw = v.to_bytes()
            status, inner = open_outer(srv._alpha, m, v, acc)
            o = parse_inner(inner, K, AD_MAX) if status == 1 else None
            out[kind].append(
                {"raw": raw, "status": status, "o": o, "q": [q for q, _ in v.pairs], "account": acc}
            )
    srv.close()
    return out


def _chi2(a: list[int], b: list[int], bins: int) -> float:
    table = np.array([np.bincount(a, minlength=bins), np.bincount(b, minlength=bins)])
    table = table[:, table.sum(axis=0) > 0]
    return float(chi2_contingency(table)[1])


FEATURES: dict[str, tuple[Callable[[dict[str, Any]], list[int]], int]] = {
    "share y low bits": (lambda v: [v["o"].y & 15], 16),
    "share y high bits": (lambda v: [v["o"].y >> 251], 16),
    "x low bits": (lambda v: [v["o"].x & 15], 16),
    "detection coords": (lambda v: [int(d) & 15 for d in v["o"].det], 16),
    "detection high bits": (lambda v: [int(d) >> 27 for d in v["o"].det], 16),
    "AD ciphertext bytes": (lambda v: [b >> 4 for b in v["o"].adct[:48]], 16),
    "Q encodings": (lambda v: [q[5] >> 4 for q in v["q"]], 16),
    "voucher bytes": (lambda v: [b >> 4 for b in v["raw"][40:200]], 16),
}


def test_every_voucher_opens_and_sizes_are_equal(views: dict[str, list[dict[str, Any]]]) -> None:
    for kind in ("real", "synthetic"):
        assert {v["status"] for v in views[kind]} == {1}, kind
        assert all(v["o"] is not None for v in views[kind])
    sizes = {len(v["raw"]) for kind in views for v in views[kind]}
    assert len(sizes) == 1
    inner = {len(v["o"].adct) for kind in views for v in views[kind]}
    assert len(inner) == 1  # AD length is padded away


@pytest.mark.parametrize("name", sorted(FEATURES))
def test_real_and_synthetic_look_alike(views: dict[str, list[dict[str, Any]]], name: str) -> None:
    feat, bins = FEATURES[name]
    a = [x for v in views["real"] for x in feat(v)]
    b = [x for v in views["synthetic"] for x in feat(v)]
    assert _chi2(a, b, bins) > ALPHA_LEVEL, name


def test_share_values_uniform_ks(views: dict[str, list[dict[str, Any]]]) -> None:
    ys = {k: [v["o"].y / shamir.PRIME for v in views[k]] for k in views}
    assert ks_2samp(ys["real"], ys["synthetic"]).pvalue > ALPHA_LEVEL
    ds = {k: [int(v["o"].det[0]) / dhf.Q for v in views[k]] for k in views}
    assert ks_2samp(ds["real"], ds["synthetic"]).pvalue > ALPHA_LEVEL


def test_the_tests_have_power(views: dict[str, list[dict[str, Any]]]) -> None:
    """Junk drawn from only the lower 3/4 of the field, or a 23% point mass, would be caught."""
    real = [v["o"].y >> 251 for v in views["real"]]
    biased = [secrets.randbelow(12) for _ in range(N)]
    assert _chi2(real, biased, 16) < 1e-6
    real_d = [int(v["o"].det[0]) / dhf.Q for v in views["real"]]
    biased_d = [min(1.0, secrets.randbelow(dhf.Q) / dhf.Q * 1.3) for _ in range(N)]
    assert ks_2samp(real_d, biased_d).pvalue < 1e-6


def test_below_threshold_no_structure_across_an_account(
    views: dict[str, list[dict[str, Any]]],
) -> None:
    """The server's best linear tool (the DHF) finds nothing in t-1 real shares + synthetic ones."""
    by_acc: dict[bytes, list[Any]] = {}
    for v in views["real"]:
        by_acc.setdefault(v["account"], []).append(v["o"])
    checked = 0
    for os_ in by_acc.values():
        if len(os_) != T - 1:
            continue
        synth = [v["o"] for v in views["synthetic"][:K]]
        rows = os_ + synth
        m = dhf.rows(
            [dhf.detection_point(o.x_bytes) for o in rows], np.stack([o.det for o in rows]), T
        )
        assert dhf.kernel_support(m) == []
        checked += 1
        if checked == 5:
            break
    assert checked == 5
