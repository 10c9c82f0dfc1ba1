"""`blindmatch admin reveals` against a store filled by a real server over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from blindmatch.client import HttpTransport
from blindmatch.protocol import Query, get_protocol
from blindmatch.server import LiveServer, SetDir

from blindmatch.corpus import random_set


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "blindmatch.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_admin_reveals_below_and_at_threshold(tmp_path: Path) -> None:
    hs = random_set(20, seed=3)
    a = hs.algo
    SetDir.build(tmp_path / "set", a, hs.values(), ["t"])
    env = {"BLINDMATCH_PROTOCOLS": "tpsi", "BLINDMATCH_TPSI_THRESHOLD": "3",
           "BLINDMATCH_TPSI_SYNTHETIC_RATE": "0"}
    floors = {"min_threshold": 2, "min_synthetic_rate": 0}  # the server below runs t = 3, s = 0
    client = get_protocol("tpsi").new_client(a, tmp_path / "cache", floors)
    with LiveServer(tmp_path / "set", env=env) as srv:
        tr = HttpTransport(srv.url, "tpsi", client_id="acct")
        sd = SetDir.open(tmp_path / "set")
        for i in range(2):
            client.scan(Query(sd.hashes.value(i), account="acct", associated_data=f"match-{i}".encode()), tr)
        client.scan(Query(a.from_bytes(bytes(32)), account="acct", associated_data=b"innocent"), tr)
        r = _cli("admin", "reveals", "--db", str(tmp_path / "set"), "--account", "acct")
        assert r.returncode == 0 and r.stdout == ""
        client.scan(Query(sd.hashes.value(5), account="acct", associated_data=b"match-5"), tr)
        import time

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = _cli("admin", "reveals", "--db", str(tmp_path / "set"), "--account", "acct")
            if r.stdout.strip():
                break
            time.sleep(0.5)
    ads = sorted(json.loads(ln)["ad_text"] for ln in r.stdout.splitlines())
    assert ads == ["match-0", "match-1", "match-5"]
    r = _cli("admin", "reveals", "--db", str(tmp_path / "missing"), "--account", "acct")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_db_info_digest_pins_a_client_and_admin_enroll_binds_a_key(tmp_path: Path) -> None:
    """`db info` prints the tpsi manifest digest a client can pin; `admin enroll` binds an account."""
    from blindmatch.protocol import LocalTransport
    from blindmatch.protocol.tpsi import TpsiServer

    hs = random_set(8, seed=5)
    a = hs.algo
    sd = SetDir.build(tmp_path / "set", a, hs.values(), ["t"])
    tpsi = get_protocol("tpsi")
    srv = tpsi.open_server(hs, sd.state_dir("tpsi"), {"reveal_mode": "inline", "enrollment": "admin"})
    assert isinstance(srv, TpsiServer)
    info = _cli("db", "info", str(tmp_path / "set"))
    assert info.returncode == 0, info.stderr
    digest = json.loads(info.stdout)["tpsi"]["manifest_digest"]
    assert digest == srv.manifest.digest().hex()
    client = tpsi.new_client(a, tmp_path / "cache", {"pinned_manifest_digest": digest})
    client.setup(LocalTransport(srv))
    key = client.client_key("acct").hex()
    bad = _cli("admin", "enroll", "--db", str(tmp_path / "set"), "--account", "acct", "--client-key", "zz")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    ok = _cli("admin", "enroll", "--db", str(tmp_path / "set"), "--account", "acct", "--client-key", key)
    assert ok.returncode == 0, ok.stderr
    client.scan(Query(hs.value(0), account="acct", associated_data=b"x"), LocalTransport(srv))
    assert srv.store.voucher_count("acct") == 1
    assert [e["event"] for e in srv.store.audit_log("acct")] == ["account_enrolled"]
    srv.close()
