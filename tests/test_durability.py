"""Durability and faults: SIGKILL drill, corrupt state at start-up, disk full.

The kill drill is written against tpsi's store (the protocol that acknowledges
writes); it is skipped only when ``tpsi`` is not registered.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
from pathlib import Path

import pytest
from blindmatch.protocol import REGISTRY, BlindmatchError
from blindmatch.reliability import faults
from blindmatch.reliability import harness as H
from blindmatch.server import LiveServer, SetDir, Settings, create_app
from blindmatch.server.settings import protocol_options_from_env

from . import _http

needs_tpsi = pytest.mark.skipif("tpsi" not in REGISTRY, reason="tpsi is not registered")


def _assert_kill_report(rep: faults.KillReport) -> None:
    detail = (f"lost={rep.lost_acked[:5]} unknown={rep.unknown_stored[:5]} digest={rep.digest_mismatch[:5]} "
              f"inconsistent={rep.inconsistent[:5]} partial={rep.partial_batches} integrity={rep.integrity} "
              f"accounts_ok={rep.account_counts_ok} acked_batches={rep.batches_acked}")
    assert rep.ok, detail
    assert rep.vouchers_stored >= rep.vouchers_acked > 0


@needs_tpsi
@pytest.mark.timeout(300)
def test_sigkill_loses_no_acknowledged_voucher(tmp_path: Path) -> None:
    rep = faults.kill_cycles(tmp_path, cycles=3, seed=11)
    print(rep)
    _assert_kill_report(rep)
    assert rep.cycles == 3


@needs_tpsi
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_sigkill_many_cycles(tmp_path: Path) -> None:
    rep = faults.kill_cycles(tmp_path, cycles=20, seed=12, uploaders=3)
    _assert_kill_report(rep)


# ------------------------------------------------------------------ corrupt state at start-up

def _state_files(set_dir: Path) -> list[Path]:
    return sorted(p for p in (set_dir / "state").rglob("*") if p.is_file() and not p.name.endswith(
        ("-wal", "-shm", ".tmp", ".lock")))


@pytest.fixture()
def fresh_set(tmp_path: Path) -> Path:
    """A set dir whose every protocol has created its state (keys, tables, stores)."""
    from ._reliability import prepared

    d = tmp_path / "set"
    shutil.copytree(prepared() / "set", d)
    for f in d.rglob("*"):  # copytree keeps modes; keep key files 0600
        pass
    return d


def _open_all(set_dir: Path, only: str | None = None) -> None:
    """Open the server halves exactly as the app does (``only``: just that protocol)."""
    app = create_app(Settings(db=set_dir, protocols=only or "*", **_settings_extra()))
    for s in app.state.servers.values():
        s.close()


def _settings_extra() -> dict[str, object]:
    return {"protocol_options": protocol_options_from_env(H.LIVE_ENV)}


DAMAGE_FAST = ("flipped",)
DAMAGE_SLOW = ("truncated", "empty")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("modes", [pytest.param(DAMAGE_FAST, id="flipped"),
                                   pytest.param(DAMAGE_SLOW, id="truncated-empty", marks=pytest.mark.slow)])
def test_every_state_file_damage_is_a_clear_error_or_harmless(fresh_set: Path, modes: tuple) -> None:
    """Damage each protocol state file in turn. Start-up must either fail with a typed error
    naming that file, or open a server that still answers correctly: a member of the set
    still matches (checked with the real client for protocols whose client learns the
    verdict). Never an untyped crash; never a server that silently serves a wrong set."""
    from blindmatch.protocol import Learner, LocalTransport, Query

    files = _state_files(fresh_set)
    assert files, "protocols created no state"
    _open_all(fresh_set)  # sanity: opens cleanly
    hs = SetDir.open(fresh_set).hashes
    outcomes: dict[str, str] = {}
    for f in files:
        orig, mode = f.read_bytes(), f.stat().st_mode
        owner = f.relative_to(fresh_set / "state").parts[0]
        proto = REGISTRY.get(owner)
        for how in modes:
            data = {"truncated": orig[: len(orig) // 2], "empty": b"", "flipped": _flip(orig)}[how]
            if data == orig:
                continue
            f.write_bytes(data)
            os.chmod(f, mode)
            key = f"{owner}/{f.name}:{how}"
            try:
                srv = proto.open_server(hs, fresh_set / "state" / owner, _options(owner)) if proto else None
                outcomes[key] = "opened"
                if srv is not None:
                    try:
                        if proto.learner in (Learner.CLIENT, Learner.BOTH, Learner.CLIENT_OR_SERVER):
                            client = proto.new_client(hs.algo, fresh_set.parent / f"dmg-{owner}", {})
                            r = client.scan(Query(hs.value(3), account="dmg", associated_data=b"x"),
                                            LocalTransport(srv))
                            outcomes[key] = f"opened, member matched={r.matched}"
                    except BlindmatchError as e:
                        outcomes[key] = f"opened, query failed {type(e).__name__}"
                    finally:
                        srv.close()
            except BlindmatchError as e:
                assert f.name in str(e) or str(f.parent) in str(e), f"{key}: error names no file: {e}"
                outcomes[key] = type(e).__name__
            except Exception as e:
                pytest.fail(f"{key}: untyped {type(e).__name__}: {e}")
            finally:
                f.write_bytes(orig)
                os.chmod(f, mode)
                for junk in f.parent.glob(f.name + "-*"):
                    junk.unlink()
    print(json.dumps(outcomes, indent=1))
    wrong = {k: v for k, v in outcomes.items() if "matched=False" in v or "query failed" in v}
    assert not wrong, f"damaged state opened without an error and then served wrongly: {wrong}"
    for k, v in outcomes.items():  # damaged secret keys never load
        if k.split(":")[0].endswith(".key"):
            assert not v.startswith("opened"), f"{k}: {v}"


def _options(name: str) -> dict[str, object]:
    return dict(H.SERVER_OPTIONS.get(name, {}))


def _flip(b: bytes) -> bytes:
    if not b:
        return b"\x00"
    x = bytearray(b)
    for i in range(0, len(x), max(1, len(x) // 7)):
        x[i] ^= 0x5A
    return bytes(x)


def test_corrupt_set_dir_refuses_to_serve_over_http(fresh_set: Path) -> None:
    """uvicorn start-up on a damaged set exits with an error naming the file (no empty server)."""
    (fresh_set / "hashes.bin").write_bytes((fresh_set / "hashes.bin").read_bytes()[:-3])
    with pytest.raises(RuntimeError) as e:
        LiveServer(fresh_set, env=H.LIVE_ENV, startup_timeout=60).start()
    assert "hashes.bin" in str(e.value)


# ------------------------------------------------------------------ disk full

def _table_counts(set_dir: Path) -> dict[str, int]:
    out = {}
    for db in (set_dir / "state").rglob("*.sqlite*"):
        if db.name.endswith(("-wal", "-shm")):
            continue
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
                out[f"{db.name}:{t}"] = con.execute(f"SELECT COUNT(*) FROM \"{t}\"").fetchone()[0]
        finally:
            con.close()
    return out


@pytest.mark.timeout(300)
def test_disk_full_gives_503_and_keeps_data(fresh_set: Path) -> None:
    """RLIMIT_FSIZE on the live server process (Python ignores SIGXFSZ, so writes fail with
    EFBIG like a full disk). Every protocol's real client scans over HTTP: each answer is 2xx,
    a typed 4xx or 503 — never a 500 — a protocol that writes per request (tpsi) answers 503,
    the server keeps serving, and after a restart without the limit every row written before
    is still there and the stores pass ``PRAGMA integrity_check``."""
    from blindmatch.client import HttpTransport, ServerError
    from blindmatch.protocol import Query

    hs = SetDir.open(fresh_set).hashes
    env = {**H.LIVE_ENV, "BLINDMATCH_RATE_PER_SECOND": "100000", "BLINDMATCH_RATE_BURST": "100000"}

    def footprint(name: str) -> list[tuple[str, int, int]]:
        d = fresh_set / "state" / name
        return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in d.rglob("*") if p.is_file())

    writers: set[str] = set()

    def scan_all(url: str, tag: str, cache: Path) -> dict[str, list[int | str]]:
        out: dict[str, list[int | str]] = {}
        for name, proto in sorted(REGISTRY.items()):
            if proto.server_processes > 1:  # not served by this single process (see LiveParties)
                continue
            client = proto.new_client(hs.algo, cache / name, H.client_options(name))
            tr = HttpTransport(url, name, client_id=f"{tag}-{name}")
            n = 3 if name in writers else 1  # HE queries take seconds; only writers need several
            fp = footprint(name)
            for i, q in enumerate(H.queries(hs, 2, 1, seed=len(tag), account=f"{tag}-acct")[:n]):
                try:
                    client.scan(Query(q.hash, q.float_values, q.quality, q.account, f"{tag}{i}".encode()), tr)
                    out.setdefault(name, []).append(200)
                except ServerError as e:
                    out.setdefault(name, []).append(e.http_status)
                except BlindmatchError as e:
                    out.setdefault(name, []).append(e.code)
            tr.close()
            if footprint(name) != fp:
                writers.add(name)
        return out

    with LiveServer(fresh_set, env=env) as srv:
        first = scan_all(srv.url, "before", fresh_set.parent / "c1")
        assert all(c == 200 for v in first.values() for c in v), first
        before = _table_counts(fresh_set)
        assert srv.proc is not None
        limit = 4096
        biggest = max(p.stat().st_size for p in (fresh_set / "state").rglob("*") if p.is_file())
        assert biggest > limit, "the limit must be below the stores' size for the drill to mean anything"
        resource.prlimit(srv.proc.pid, resource.RLIMIT_FSIZE, (limit, limit))
        full = scan_all(srv.url, "full", fresh_set.parent / "c2")
        assert _http.get(srv.url + "/healthz").status_code == 200  # still serving
    for name, codes in full.items():
        assert 500 not in codes, (name, codes)
        assert all(c in (200, 503) or isinstance(c, str) for c in codes), (name, codes)
    assert writers, "no protocol wrote anything per request: the drill tested nothing"
    for name in writers:
        assert 503 in full[name], f"{name} writes per request but never hit the full disk: {full[name]}"
    with LiveServer(fresh_set, env=env):
        pass
    after = _table_counts(fresh_set)
    assert before
    for k, v in before.items():
        assert after.get(k, 0) >= v, f"{k}: {v} rows before the full disk, {after.get(k)} after"
