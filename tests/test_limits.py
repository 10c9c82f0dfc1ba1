"""Limits and abuse, generic over the registry, over real HTTP.

For every endpoint of every registered protocol: a POST body over the endpoint's cap
is answered 413 before the handler runs (with and without Content-Length, so the
cap is enforced while streaming); every rate-limited endpoint answers 429 with a
Retry-After header once a client's bucket is empty, while another client is still
served; every admin endpoint answers 401 to a missing or wrong token.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from blindmatch.protocol import REGISTRY
from blindmatch.reliability import harness as H
from blindmatch.server import LiveServer
from blindmatch.server.testing import LiveParties

from . import _http

ADMIN = "limits-admin-token-0123456789"


@pytest.fixture(scope="module")
def prepared() -> tuple[Path, dict[str, H.Recording]]:
    from ._reliability import prepared as base
    from ._reliability import recordings

    return base() / "set", recordings()


# the test plays a trusted reverse proxy on loopback that names each client in a header
_ENV = {**H.LIVE_ENV, "BLINDMATCH_RATE_PER_SECOND": "0.01", "BLINDMATCH_RATE_BURST": "1",
        "BLINDMATCH_ADMIN_TOKEN": ADMIN, "BLINDMATCH_TRUSTED_PROXIES": "127.0.0.1"}


@pytest.fixture(scope="module")
def live(prepared):
    set_dir, _ = prepared
    with LiveServer(set_dir, env=_ENV) as srv:
        yield srv


@pytest.fixture(scope="module")
def base(prepared, live: LiveServer):
    """Where each protocol is really served: multi-process protocols by their own parties."""
    set_dir, recs = prepared
    multi = [n for n in recs if REGISTRY[n].server_processes > 1]
    if not multi:
        yield lambda name: live.url
        return
    with LiveParties(set_dir, env=_ENV) as parties:
        yield lambda name: parties.url if name in multi else live.url


def _all(prepared, pred) -> list[tuple[str, object]]:
    _, recs = prepared
    return [(name, ep) for name, rec in recs.items() for ep in rec.endpoints() if pred(ep)]


def test_every_protocol_is_served(prepared, live: LiveServer) -> None:
    _, recs = prepared
    served = _http.get(live.url + "/healthz").json()["protocols"]
    assert sorted(recs) == sorted(served) == sorted(REGISTRY)


def test_post_body_caps_413(prepared, base) -> None:
    eps = _all(prepared, lambda e: e.method == "POST")
    assert eps
    for i, (name, ep) in enumerate(eps):
        url = f"{base(name)}/v1/{name}/{ep.path}"
        hdrs = {"x-blindmatch-client": f"cap-{i}", "authorization": f"Bearer {ADMIN}"}
        r = _http.post(url, content=b"\x01" * (ep.max_body + 1), headers=hdrs, timeout=60)
        assert r.status_code == 413 and r.json()["error"] == "body_too_large", (name, ep.path, r.text)

        def chunks(n: int = ep.max_body + 1):  # no Content-Length: the stream is cut at the cap
            sent = 0
            while sent < n:
                k = min(65536, n - sent)
                sent += k
                yield b"\x01" * k

        r = _http.post(url, content=chunks(), headers=hdrs, timeout=60)
        assert r.status_code == 413, (name, ep.path, r.status_code)
        # exactly at the cap is not a 413 (the handler decides: typed 4xx or 2xx)
        r = _http.post(url, content=b"\x01" * ep.max_body, headers={**hdrs, "x-blindmatch-client": f"at-{i}"},
                       timeout=120)
        assert r.status_code != 413 or r.json()["error"] == "batch_too_large", (name, ep.path)
        assert r.status_code < 500


def test_get_endpoints_never_buffer_a_body(prepared, base) -> None:
    """GET routes do not read a body at all: a large one is ignored, never buffered or a 5xx."""
    for name, ep in _all(prepared, lambda e: e.method == "GET" and not e.admin):
        r = _http.request("GET", f"{base(name)}/v1/{name}/{ep.path}", content=b"x" * 2_000_000, timeout=60)
        assert r.status_code < 500, (name, ep.path)


def test_rate_limited_endpoints_429_with_retry_after(prepared, base) -> None:
    _, recs = prepared
    eps = _all(prepared, lambda e: e.rate_limited)
    assert eps, "no rate-limited endpoint registered"
    for name, ep in eps:
        body = (recs[name].requests(ep.method, ep.path) or [b""])[0]
        url = f"{base(name)}/v1/{name}/{ep.path}"
        codes = []
        for _ in range(5):
            r = _http.request(ep.method, url, content=body if ep.method == "POST" else None,
                              headers={"x-blindmatch-client": f"rl-{name}-{ep.path}"}, timeout=120)
            codes.append(r.status_code)
            if r.status_code == 429:
                assert r.json()["error"] == "rate_limited"
                assert int(r.headers["retry-after"]) >= 1
                break
        assert 429 in codes, (name, ep.path, codes)
        assert all(c < 500 for c in codes)
        # another client is unaffected (a junk body: the limit is taken before the handler runs)
        other = _http.request(ep.method, url, content=b"\x01" if ep.method == "POST" else None,
                              headers={"x-blindmatch-client": f"other-{name}-{ep.path}"}, timeout=120)
        assert other.status_code != 429 or codes[0] == 429, "a batch larger than the burst is always 429"


def test_every_evaluation_endpoint_is_rate_limited(prepared) -> None:
    """Evaluation = any non-admin POST (it runs the server's secret or its set on client input)."""
    missing = _all(prepared, lambda e: e.method == "POST" and not e.admin and not e.rate_limited)
    assert not missing, [f"{n} {e.path}" for n, e in missing]


def test_admin_endpoints_need_the_token(prepared, live: LiveServer) -> None:
    eps = _all(prepared, lambda e: e.admin)
    if not eps:
        pytest.skip(f"no registered protocol has admin endpoints ({sorted(REGISTRY)})")
    for name, ep in eps:
        url = f"{live.url}/v1/{name}/{ep.path}"
        for hdr in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Bearer {ADMIN[:-1]}"},
                    {"authorization": ADMIN + "x"}, {"authorization": f"Basic {ADMIN}"}):
            r = _http.request(ep.method, url, headers=hdr, content=b"" if ep.method == "POST" else None)
            assert r.status_code == 401 and r.json()["error"] == "unauthorized", (name, ep.path, hdr)
        r = _http.request(ep.method, url, headers={"authorization": f"Bearer {ADMIN}"},
                          content=b"" if ep.method == "POST" else None)
        assert r.status_code != 401 and r.status_code < 500, (name, ep.path, r.status_code)


def test_admin_endpoints_closed_without_configured_token(prepared, tmp_path: Path) -> None:
    set_dir, _ = prepared
    eps = _all(prepared, lambda e: e.admin)
    if not eps:
        pytest.skip("no admin endpoints registered")
    with LiveServer(set_dir, env={**H.LIVE_ENV}) as srv:
        for name, ep in eps:
            url = f"{srv.url}/v1/{name}/{ep.path}"
            r = _http.request(ep.method, url, headers={"authorization": "Bearer anything"})
            assert r.status_code == 401


def test_slow_body_is_cut_off(prepared) -> None:
    """A client that never finishes its body (slowloris) gets an answer after the read timeout."""
    import socket
    import time

    set_dir, _ = prepared
    name, ep = _all(prepared, lambda e: e.method == "POST" and not e.admin)[0]
    with LiveServer(set_dir, env={**H.LIVE_ENV, "BLINDMATCH_REQUEST_TIMEOUT_S": "1"}) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(f"POST /v1/{name}/{ep.path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                      "Content-Type: application/octet-stream\r\n\r\n0123456789".encode())
            t0 = time.monotonic()
            head = s.recv(200).decode(errors="replace")
            waited = time.monotonic() - t0
        assert head.startswith("HTTP/1.1 413"), head
        assert 0.5 < waited < 8, waited
