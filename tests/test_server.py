"""Integration: a real uvicorn server on 127.0.0.1, real HTTP, real set directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from blindmatch.client import HttpTransport, ServerError, hash_bytes, hash_file
from blindmatch.protocol import (
    CorruptStoreError,
    EmptySetError,
    Query,
    get_algo,
    get_protocol,
)
from blindmatch.protocol.plain import PlainQuery
from blindmatch.server import LiveServer, SetDir, Settings, create_app
from PIL import Image

from . import _http
from .conftest import encode


@pytest.fixture(scope="module")
def set_dir(tmp_path_factory: pytest.TempPathFactory, image_dir: Path) -> Path:
    d = tmp_path_factory.mktemp("set")
    values = [hash_file(p).hash for p in sorted(image_dir.glob("*.png"))[:4]]
    SetDir.build(d, get_algo("pdq"), values, ["test"])
    return d


@pytest.fixture(scope="module")
def server(set_dir: Path) -> LiveServer:
    with LiveServer(set_dir, env={"BLINDMATCH_PROTOCOLS": "plain"}) as srv:
        yield srv


def test_health_and_protocols(server: LiveServer, set_dir: Path) -> None:
    h = _http.get(server.url + "/healthz").json()
    assert h["set"]["count"] == 4 and h["set"]["digest"] == SetDir.open(set_dir).digest
    p = _http.get(server.url + "/v1/protocols").json()
    assert p["plain"]["private"] is False and p["plain"]["learner"] == "both"


def test_plain_end_to_end(server: LiveServer, images: list[Image.Image]) -> None:
    client = get_protocol("plain").new_client(get_algo("pdq"))
    tr = HttpTransport(server.url, "plain")
    known = hash_bytes(encode(images[0], "JPEG", quality=90))
    unknown = hash_bytes(encode(images[6]))
    r1 = client.scan(Query(known.hash), tr)
    r2 = client.scan(Query(unknown.hash), tr)
    assert r1.matched is True and r1.distance is not None and r1.distance <= 31
    assert r2.matched is False and r2.distance is not None and r2.distance > 31
    assert r1.bytes_up == r2.bytes_up == len(PlainQuery(known.hash).to_bytes())
    tr.close()


@pytest.mark.parametrize(
    "body,code",
    [
        (b"", "bad_length"),
        (b"\x09\x01\x01\x02", "unknown_version"),
        (b"\x01\x02\x01\x02", "wrong_protocol"),
        (PlainQuery(get_algo("pdq").from_bytes(bytes(32))).to_bytes()[:-1], "bad_length"),
        (PlainQuery(get_algo("phash").from_bytes(bytes(8))).to_bytes(), "bad_hash"),
    ],
)
def test_malformed_gets_4xx_json(server: LiveServer, body: bytes, code: str) -> None:
    r = _http.post(server.url + "/v1/plain/query", content=body)
    assert r.status_code == 400
    assert r.json()["error"] == code and r.json()["detail"]


def test_oversized_body_413(server: LiveServer) -> None:
    r = _http.post(server.url + "/v1/plain/query", content=b"\x01" * 100_000)
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"

    def chunks():  # no Content-Length: the streaming cap must still stop it
        for _ in range(100):
            yield b"\x01" * 4096

    r = _http.post(server.url + "/v1/plain/query", content=chunks())
    assert r.status_code == 413


def test_unknown_route_and_method(server: LiveServer) -> None:
    r = _http.get(server.url + "/v1/nope/query")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = _http.get(server.url + "/v1/plain/query")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_rate_limit_429_over_http(set_dir: Path) -> None:
    """Behind a configured proxy (here: loopback), the proxy's client header picks the bucket."""
    env = {"BLINDMATCH_PROTOCOLS": "plain", "BLINDMATCH_RATE_PER_SECOND": "0.5",
           "BLINDMATCH_RATE_BURST": "2", "BLINDMATCH_TRUSTED_PROXIES": "127.0.0.1"}
    body = PlainQuery(get_algo("pdq").from_bytes(bytes(32))).to_bytes()
    with LiveServer(set_dir, env=env) as srv:
        hdr = {"x-blindmatch-client": "c1"}
        codes = [_http.post(srv.url + "/v1/plain/query", content=body, headers=hdr) for _ in range(3)]
        assert [r.status_code for r in codes] == [200, 200, 429]
        assert codes[2].json()["error"] == "rate_limited" and int(codes[2].headers["retry-after"]) >= 1
        other = _http.post(srv.url + "/v1/plain/query", content=body, headers={"x-blindmatch-client": "c2"})
        assert other.status_code == 200


def test_token_bucket_semantics() -> None:
    from blindmatch.protocol import RateLimitedError
    from blindmatch.server.ratelimit import TokenBuckets

    tb = TokenBuckets(rate=1.0, burst=2.0)
    tb.take("a")
    tb.take("a")
    with pytest.raises(RateLimitedError) as e:
        tb.take("a")
    assert 0 < e.value.retry_after <= 1.0
    tb.take("b")  # other clients unaffected
    with pytest.raises(RateLimitedError):
        tb.take("c", cost=5)  # a batch larger than the burst can never pass


def test_transport_raises_typed_server_error(server: LiveServer) -> None:
    tr = HttpTransport(server.url, "plain")
    with pytest.raises(ServerError) as e:
        tr.post("query", b"junk")
    assert e.value.http_status == 400 and e.value.code == "unknown_version"


def test_corrupt_set_dir_names_the_file(set_dir: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(set_dir, bad)
    (bad / "hashes.bin").write_bytes((bad / "hashes.bin").read_bytes()[:-5])
    with pytest.raises(CorruptStoreError) as e:
        create_app(Settings(db=bad))
    assert "hashes.bin" in str(e.value)
    (bad / "hashes.bin").write_bytes(bytes(32 * 4))
    with pytest.raises(CorruptStoreError, match="digest"):
        create_app(Settings(db=bad))
    (bad / "set.json").write_text("{not json")
    with pytest.raises(CorruptStoreError, match=r"set\.json"):
        create_app(Settings(db=bad))
    meta = json.loads((set_dir / "set.json").read_text())
    meta["count"] = 0
    (bad / "set.json").write_text(json.dumps(meta))
    with pytest.raises(EmptySetError):
        SetDir.open(bad)
    with pytest.raises(CorruptStoreError):
        SetDir.open(tmp_path / "missing")


def test_rate_limit_not_bypassed_by_client_header(set_dir: Path) -> None:
    """a client that invents a new X-Blindmatch-Client per request keeps one bucket."""
    env = {"BLINDMATCH_PROTOCOLS": "plain", "BLINDMATCH_RATE_PER_SECOND": "0.5", "BLINDMATCH_RATE_BURST": "2"}
    body = PlainQuery(get_algo("pdq").from_bytes(bytes(32))).to_bytes()
    with LiveServer(set_dir, env=env) as srv:
        url = srv.url + "/v1/plain/query"
        codes = [
            _http.post(url, content=body, headers={"x-blindmatch-client": f"sybil-{i}"}).status_code
            for i in range(4)
        ]
        assert codes == [200, 200, 429, 429]
    # a proxy list that does not name the peer changes nothing
    env["BLINDMATCH_TRUSTED_PROXIES"] = "10.0.0.1"
    with LiveServer(set_dir, env=env) as srv:
        url = srv.url + "/v1/plain/query"
        codes = [
            _http.post(url, content=body, headers={"x-blindmatch-client": f"sybil-{i}"}).status_code
            for i in range(3)
        ]
        assert codes == [200, 200, 429]
