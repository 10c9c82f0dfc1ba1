"""Every registered protocol must pass this shared suite (ThreatExchange-style)."""

from __future__ import annotations

from pathlib import Path

import pytest
from blindmatch.protocol import (
    REGISTRY,
    BlindmatchError,
    HashSet,
    Learner,
    LocalTransport,
    Query,
)

PROTOCOLS = sorted(REGISTRY)


@pytest.fixture(scope="module", params=PROTOCOLS)
def opened(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, hash_set: HashSet):
    proto = REGISTRY[request.param]
    hs = hash_set
    srv = proto.open_server(hs, tmp_path_factory.mktemp(proto.name), {"threshold": 2})
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
    client = proto.new_client(hs.algo, tmp_path, {})
    tr = LocalTransport(srv)
    member = client.scan(Query(hs.value(3), account="acct", associated_data=b"m"), tr)
    other = client.scan(Query(hs.value(3).flip(range(0, 256, 2)), account="acct", associated_data=b"n"), tr)
    if proto.learner in (Learner.CLIENT, Learner.BOTH, Learner.CLIENT_OR_SERVER):
        assert member.matched is True and other.matched is False
    else:
        assert member.matched is None and other.matched is None
    assert member.bytes_up > 0 and member.bytes_down > 0


def test_request_size_independent_of_membership(opened, tmp_path: Path) -> None:
    proto, hs, srv = opened
    if not proto.private:
        pytest.skip("the plaintext baseline sends the hash itself")
    client = proto.new_client(hs.algo, tmp_path, {})
    tr = LocalTransport(srv)
    client.scan(Query(hs.value(0), account="a", associated_data=b"x"), tr)  # warm one-time downloads
    tr.reset_counters()
    m = client.scan(Query(hs.value(1), account="a", associated_data=b"x"), tr)
    n = client.scan(Query(hs.value(1).flip(range(100)), account="a", associated_data=b"x"), tr)
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
