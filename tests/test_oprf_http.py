"""``oprf`` against a real uvicorn server on 127.0.0.1 (blindmatch.server.testing.LiveServer)."""

from __future__ import annotations

import numpy as np
import pytest
from blindmatch.client import HttpTransport
from blindmatch.protocol import REGISTRY, Query, get_algo
from blindmatch.protocol.hazmat import ristretto as R
from blindmatch.protocol.oprf import EvaluateRequest, Manifest, rotate_epoch
from blindmatch.protocol.wire import encode_fields
from blindmatch.server.setdir import SetDir
from blindmatch.server.testing import LiveServer

from . import _http

PDQ = get_algo("pdq")
OPRF = REGISTRY["oprf"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("oprf-http")
    rng = np.random.default_rng(4)
    values = [PDQ.from_bytes(rng.bytes(32)) for _ in range(200)]
    sd = SetDir.build(d / "set", PDQ, values)
    env = {
        "BLINDMATCH_PROTOCOLS": "oprf",
        "BLINDMATCH_RATE_BURST": "100000",
        "BLINDMATCH_RATE_PER_SECOND": "100000",
    }
    with LiveServer(sd.path, env=env) as srv:
        yield srv, sd, d


def test_scan_over_http(live) -> None:  # type: ignore[no-untyped-def]
    srv, sd, d = live
    tr = HttpTransport(srv.url, "oprf")
    try:
        client = OPRF.new_client(PDQ, d / "cache", {"probe_bits": 2})
        fv = tuple(float(i % 7) for i in range(256))
        m = client.scan(Query(sd.hashes.value(7), float_values=fv), tr)
        n = client.scan(Query(sd.hashes.value(7).flip(range(40)), float_values=fv), tr)
        assert m.matched is True and n.matched is False
        assert m.bytes_down > 1000 and n.bytes_down == 84 + 32 * 4 and n.bytes_up == 16 + 32 * 4
        many = client.scan_many([Query(sd.hashes.value(i), float_values=fv) for i in range(20)], tr)
        assert all(r.matched for r in many)
    finally:
        tr.close()


def test_etag_304_and_content_length(live) -> None:  # type: ignore[no-untyped-def]
    srv, sd, _ = live
    base = f"{srv.url}/v1/oprf"
    man = _http.get(f"{base}/manifest")
    assert man.status_code == 200
    m = Manifest.verify(man.content)
    assert m.set_size == len(sd.hashes) and m.set_digest.hex() == sd.digest
    f = _http.get(f"{base}/filter")
    assert f.status_code == 200 and f.headers["content-length"] == str(len(f.content))
    assert f.headers["etag"] == f'"{m.filter_digest.hex()}"'
    again = _http.get(f"{base}/filter", headers={"If-None-Match": f.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert (
        _http.get(f"{base}/manifest", headers={"If-None-Match": man.headers["etag"]}).status_code
        == 304
    )


def test_malformed_and_limits_map_to_http(live) -> None:  # type: ignore[no-untyped-def]
    srv, _, _ = live
    base = f"{srv.url}/v1/oprf"
    epoch = Manifest.verify(_http.get(f"{base}/manifest").content).epoch
    ep = epoch.to_bytes(4, "big")
    good = R.hash_to_group(b"q", b"t")
    ok = _http.post(f"{base}/evaluate", content=encode_fields(2, 1, [ep, good]))
    assert ok.status_code == 200
    cases = {
        "deserialize_error": encode_fields(2, 1, [ep, R.IDENTITY]),
        "bad_length": encode_fields(2, 1, [ep, good[:-1]]),
        "unknown_epoch": encode_fields(2, 1, [(epoch + 100).to_bytes(4, "big"), good]),
        "unknown_version": b"\x09" + encode_fields(2, 1, [ep, good])[1:],
    }
    for code, body in cases.items():
        r = _http.post(f"{base}/evaluate", content=body)
        assert r.status_code == 400 and r.json()["error"] == code, (code, r.text)
    big = _http.post(f"{base}/evaluate", content=EvaluateRequest(epoch, (good,) * 1025).to_bytes())
    assert big.status_code == 413 and big.json()["error"] in ("batch_too_large", "body_too_large")


def test_rotation_on_a_running_server(live) -> None:  # type: ignore[no-untyped-def]
    srv, sd, d = live
    tr = HttpTransport(srv.url, "oprf")
    try:
        client = OPRF.new_client(PDQ, d / "cache-rot", {"manifest_ttl": 3600})
        first = client.scan(Query(sd.hashes.value(1)), tr)
        rotate_epoch(sd.state_dir("oprf"), sd.hashes, grace_seconds=0)
        second = client.scan(Query(sd.hashes.value(1)), tr)  # old epoch refused -> refresh
        assert first.matched and second.matched
        assert second.extra["epoch"] == first.extra["epoch"] + 1
    finally:
        tr.close()
