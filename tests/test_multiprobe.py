"""One multi-probe rule for oprf, tpsi and the simulator (protocol.multiprobe)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from blindmatch.protocol import (
    MAX_PROBE_BITS,
    REGISTRY,
    LocalTransport,
    ProbeError,
    Query,
    get_algo,
)
from blindmatch.protocol.multiprobe import flip_sets, probe_hashes, probe_rows
from blindmatch.sim.decide.rules import DecisionSpec, ExactIndex, nearest_distances, to_words

from blindmatch.corpus import random_set

PDQ = get_algo("pdq")
EXACT_WITH_PROBES = sorted(
    n for n, p in REGISTRY.items() if "probe_bits" in p.client_options_type.names()
)


def test_oprf_and_tpsi_take_probe_bits() -> None:
    assert {"oprf", "tpsi"} <= set(EXACT_WITH_PROBES)


@pytest.mark.parametrize("name", EXACT_WITH_PROBES)
def test_one_limit_one_error(name: str, tmp_path: Path) -> None:
    proto = REGISTRY[name]
    proto.new_client(PDQ, tmp_path, {"probe_bits": MAX_PROBE_BITS})
    for bad in (-1, MAX_PROBE_BITS + 1):
        with pytest.raises(ProbeError):
            proto.new_client(PDQ, tmp_path, {"probe_bits": bad})


@pytest.mark.parametrize("name", EXACT_WITH_PROBES)
def test_query_without_float_values_is_refused_before_sending(name: str, tmp_path: Path) -> None:
    proto = REGISTRY[name]
    hs = random_set(32, seed=5)
    opts = {"threshold": 2} if "threshold" in proto.server_options_type.names() else {}
    srv = proto.open_server(hs, tmp_path / "s", opts)
    try:
        client = proto.new_client(PDQ, tmp_path / "c", {"probe_bits": 2})
        tr = LocalTransport(srv)
        with pytest.raises(ProbeError):
            client.scan(Query(hs.value(0), account="a", associated_data=b"x"), tr)
        assert tr.bytes_up == 0  # the query itself never left the client
        fv = tuple(float(x) for x in np.random.default_rng(1).normal(size=256))
        client.scan(Query(hs.value(0), fv, account="a", associated_data=b"x"), tr)
        assert tr.bytes_up > 0
    finally:
        srv.close()


def test_simulator_rule_refuses_the_same_query() -> None:
    raw = np.frombuffer(random_set(1, seed=5).value(0).raw, dtype=np.uint8)[None, :]
    idx = ExactIndex(raw)
    near = nearest_distances(to_words(raw), to_words(raw))
    with pytest.raises(ProbeError):
        DecisionSpec("exact", probe_bits=2).verdicts(raw, None, near, idx)
    assert DecisionSpec("exact", probe_bits=0).verdicts(raw, None, near, idx).tolist() == [True]


def test_object_and_row_forms_agree() -> None:
    h = random_set(1, seed=5).value(0)
    fv = np.random.default_rng(3).normal(size=256)
    objs = [p.raw for p, _ in probe_hashes(h, tuple(fv), 4)]
    rows = [r.tobytes() for r in probe_rows(np.frombuffer(h.raw, dtype=np.uint8), fv, 4)]
    assert objs == rows and len(set(objs)) == 16 and objs[0] == h.raw
    sizes = [len(c) for c in flip_sets(fv, 4, 256)]
    assert sizes == sorted(sizes)
