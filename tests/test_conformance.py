"""Every registered protocol must pass this shared suite (ThreatExchange-style)."""

from __future__ import annotations

from pathlib import Path

import pytest
from blindmatch.protocol import (
    FLOOR_METRICS,
    REGISTRY,
    BlindmatchError,
    CostFloor,
    HashSet,
    Learner,
    LocalTransport,
    OptionError,
    Options,
    Query,
    ServerVerdict,
)
from blindmatch.reliability import harness as H

from blindmatch.corpus import random_set

from .mpc_helpers import open_multi_process

PROTOCOLS = sorted(REGISTRY)
# he's PDQ circuit takes three times its pHash one and these properties hold for any hash;
# tests/test_he*.py run he on PDQ
SET_ALGO = {"he": "phash"}


@pytest.fixture(scope="module", params=PROTOCOLS)
def opened(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, hash_set: HashSet):
    proto = REGISTRY[request.param]
    algo = SET_ALGO.get(proto.name)
    hs = random_set(len(hash_set), algo, seed=7) if algo else hash_set
    # a threshold protocol reveals after two matches here (options come from its declared type)
    opts = {"threshold": 2} if "threshold" in proto.server_options_type.names() else {}
    if proto.server_processes > 1:  # e.g. mpc: its three real party processes on loopback
        srv = open_multi_process(proto, hs, tmp_path_factory.mktemp(proto.name))
    else:
        srv = proto.open_server(hs, tmp_path_factory.mktemp(proto.name), opts)
    yield proto, hs, srv
    srv.close()


def test_declared_properties(opened) -> None:
    proto, _, _ = opened
    assert proto.name and proto.name == proto.name.lower()
    assert proto.leakage.client and proto.leakage.server and proto.leakage.network
    if proto.private:
        assert not proto.leakage.server_sees_hash
    assert isinstance(proto.learner, Learner)


def test_endpoints_have_limits(opened) -> None:
    _, _, srv = opened
    eps = srv.endpoints()
    assert eps
    assert len({(e.method, e.path) for e in eps}) == len(eps)
    for e in eps:
        assert e.method in ("GET", "POST") and 0 < e.max_body <= 64 * 1024 * 1024
        if e.method == "POST" and not e.admin:
            assert e.rate_limited, f"{e.path} is an evaluation endpoint without a rate limit"


def test_member_and_non_member(opened, tmp_path: Path) -> None:
    proto, hs, srv = opened
    client = proto.new_client(hs.algo, tmp_path, H.client_options(proto.name))
    tr = LocalTransport(srv)
    member = client.scan(Query(hs.value(3), account="acct", associated_data=b"m"), tr)
    far = hs.value(3).flip(range(0, hs.algo.bits, 2))
    other = client.scan(Query(far, account="acct", associated_data=b"n"), tr)
    if proto.learner in (Learner.CLIENT, Learner.BOTH, Learner.CLIENT_OR_SERVER):
        assert member.matched is True and other.matched is False
    else:
        assert member.matched is None and other.matched is None
    assert member.bytes_up > 0 and member.bytes_down > 0


def test_request_size_independent_of_membership(opened, tmp_path: Path) -> None:
    proto, hs, srv = opened
    if not proto.private:
        pytest.skip("the plaintext baseline sends the hash itself")
    client = proto.new_client(hs.algo, tmp_path, H.client_options(proto.name))
    tr = LocalTransport(srv)
    client.scan(Query(hs.value(0), account="a", associated_data=b"x"), tr)  # warm one-time downloads
    tr.reset_counters()
    m = client.scan(Query(hs.value(1), account="a", associated_data=b"x"), tr)
    n = client.scan(Query(hs.value(1).flip(range(hs.algo.bits // 2)), account="a", associated_data=b"x"), tr)
    assert m.bytes_up == n.bytes_up


def test_garbage_is_a_typed_error(opened) -> None:
    _, _, srv = opened
    tr = LocalTransport(srv)
    for e in srv.endpoints():
        if e.method != "POST" or e.admin:
            continue
        for body in (b"", b"\x01", b"\xff" * 40, b"\x01\x00\x00\x00"):
            with pytest.raises(BlindmatchError):
                tr.post(e.path, body)


def test_download_prediction(opened) -> None:
    proto, hs, srv = opened
    predicted = proto.download_bytes(len(hs), hs.algo)
    actual = srv.setup_bytes()
    assert actual >= 0 and predicted >= 0
    assert abs(predicted - actual) <= max(1024, 0.25 * actual)


def test_options_are_typed_and_strict(opened) -> None:
    proto, _, _ = opened
    for kind in (proto.server_options_type, proto.client_options_type):
        assert issubclass(kind, Options)
        defaults = kind()
        assert kind.from_options(defaults.to_dict()) == defaults
        assert all(o.doc for o in kind.describe()), f"{kind.__name__}: undocumented option"
        with pytest.raises(OptionError):
            kind.from_options({"no_such_option_anywhere": 1})
    assert isinstance(proto.server_options(None), proto.server_options_type)
    assert isinstance(proto.client_options({}), proto.client_options_type)


def test_cost_floor_is_declared_in_known_figures(opened) -> None:
    proto, hs, _ = opened
    floor = proto.cost_floor(len(hs), hs.algo)
    if floor is None:
        return
    assert isinstance(floor, CostFloor)
    assert set(floor.floors()) <= set(FLOOR_METRICS)
    for f in floor.floors().values():
        assert f.formula and all(t.count >= 0 for t in f.terms)
        assert f.value(lambda _p: 1e-6, cores=2) >= 0


def test_server_verdicts_match_the_learner(opened, tmp_path: Path) -> None:
    proto, hs, srv = opened
    client = proto.new_client(hs.algo, tmp_path, H.client_options(proto.name))
    tr = LocalTransport(srv)
    for i in range(2):
        client.scan(Query(hs.value(i), account="verdicts", associated_data=b"v%d" % i), tr)
    srv.settle("verdicts")
    got = srv.server_verdicts("verdicts")
    assert isinstance(got, list) and all(isinstance(v, ServerVerdict) for v in got)
    if proto.learner in (Learner.CLIENT, Learner.NOBODY):
        assert got == []  # a server that learns nothing has nothing to list
