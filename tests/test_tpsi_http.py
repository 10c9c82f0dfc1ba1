"""tpsi against a real uvicorn server on 127.0.0.1: upload, admin reveals, kill -9 durability."""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from pathlib import Path

import pytest
from blindmatch.client import HttpTransport, ServerError
from blindmatch.protocol import InputError, Query, get_algo, get_protocol
from blindmatch.protocol.tpsi import UploadBatch, list_reveals
from blindmatch.server import LiveServer, SetDir

from . import _http

PDQ = get_algo("pdq")
TOKEN = "admin-" + secrets.token_hex(8)
ENV = {
    "BLINDMATCH_PROTOCOLS": "tpsi",
    "BLINDMATCH_TPSI_THRESHOLD": "3",
    "BLINDMATCH_TPSI_SYNTHETIC_RATE": "0.0",
    "BLINDMATCH_ADMIN_TOKEN": TOKEN,
}


@pytest.fixture(scope="module")
def set_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tpsi-set")
    SetDir.build(d, PDQ, [PDQ.from_bytes(secrets.token_bytes(32)) for _ in range(12)], ["test"])
    return d


FLOORS = {"min_threshold": 2, "min_synthetic_rate": 0.0}  # the test server runs t = 3, s = 0


def _reveals(url: str, account: str, method: str = "GET") -> list[dict[str, object]]:
    hdr = {"authorization": f"Bearer {TOKEN}", "x-blindmatch-account": account}
    if method == "GET":
        r = _http.get(url + "/v1/tpsi/reveals", headers=hdr)
    else:
        r = _http.post(url + "/v1/tpsi/reveals", headers=hdr, content=account.encode())
    assert r.status_code == 200, r.text
    return list(r.json()["reveals"])


def test_end_to_end_over_http(set_dir: Path, tmp_path: Path) -> None:
    members = SetDir.open(set_dir).hashes.values()
    proto = get_protocol("tpsi")
    with LiveServer(set_dir, env=ENV) as srv:
        client = proto.new_client(PDQ, tmp_path / "cache", FLOORS)
        tr = HttpTransport(srv.url, "tpsi", client_id="acct-1")
        qs = [
            Query(members[i], account="acct-1", associated_data=f"photo-{i}.jpg".encode())
            for i in range(2)
        ]
        qs += [
            Query(
                PDQ.from_bytes(secrets.token_bytes(32)),
                account="acct-1",
                associated_data=b"cat.jpg",
            )
        ]
        results = [client.scan(q, tr) for q in qs]
        assert all(r.matched is None and r.bytes_up > 0 for r in results)
        assert _reveals(srv.url, "acct-1", "POST") == []  # two matches < t = 3
        client.scan(Query(members[2], account="acct-1", associated_data=b"photo-2.jpg"), tr)
        deadline = time.monotonic() + 30
        while len(_reveals(srv.url, "acct-1")) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)  # background reveal worker
        got = sorted(str(r["ad_text"]) for r in _reveals(srv.url, "acct-1"))
        assert got == ["photo-0.jpg", "photo-1.jpg", "photo-2.jpg"]
        assert sorted(r.ad.decode() for r in list_reveals(set_dir, "acct-1")) == got

        # admin needs the token; malformed uploads get a typed 400; ETag gives 304
        r = _http.get(srv.url + "/v1/tpsi/reveals", headers={"x-blindmatch-account": "acct-1"})
        assert r.status_code == 401
        r = _http.post(srv.url + "/v1/tpsi/vouchers", content=b"\x01\x03\x07\x05garbage")
        assert r.status_code == 400 and r.json()["error"] in ("bad_length", "decode_error")
        r = _http.post(srv.url + "/v1/tpsi/vouchers", content=b"\x01\x03\x05\x03garbage")
        assert r.status_code == 400 and r.json()["error"] == "wrong_protocol"  # unsigned format
        t1 = _http.get(srv.url + "/v1/tpsi/table")
        t2 = _http.get(srv.url + "/v1/tpsi/table", headers={"if-none-match": t1.headers["etag"]})
        assert t1.status_code == 200 and t2.status_code == 304 and t2.content == b""

        # durability: two acknowledged matches survive SIGKILL
        for i in (3, 4):
            client.scan(Query(members[i], account="acct-2", associated_data=b"k%d" % i), tr)
        tr.close()
        srv.kill()
        srv.start()
        tr = HttpTransport(srv.url, "tpsi", client_id="acct-2")
        fresh = proto.new_client(PDQ, tmp_path / "cache", FLOORS)  # same cache dir: same account seed
        fresh.scan(Query(members[5], account="acct-2", associated_data=b"k5"), tr)
        assert sorted(str(r["ad_text"]) for r in _reveals(srv.url, "acct-2", "POST")) == [
            "k3",
            "k4",
            "k5",
        ]
        with pytest.raises(InputError):  # AD above the server's ad_max never leaves the client
            fresh.scan(Query(members[6], account="acct-2", associated_data=b"x" * 1000), tr)
        stale = fresh.vouchers_for(Query(members[7], account="acct-2", associated_data=b"s"))[0]
        payload = UploadBatch("acct-2", (replace(stale, epoch=stale.epoch + 9).to_bytes(),))
        payload = payload.signed(fresh._account("acct-2")[1])
        with pytest.raises(ServerError) as ei:  # a stale or future epoch is refused
            tr.post("vouchers", payload.to_bytes())
        assert ei.value.http_status == 400 and ei.value.code == "unknown_epoch"
        tr.close()
