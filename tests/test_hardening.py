"""Hardening against local and network adversaries: secrets in reprs, key-file races, rollback."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

import pytest
from blindmatch.protocol import HashSet, LocalTransport, Query, TransportReply, get_algo
from blindmatch.protocol.keyfile import write_secret
from blindmatch.protocol.oprf import OPRF, rotate_epoch
from blindmatch.protocol.tpsi._core import AccountSecrets

from .test_oprf import Tap

PDQ = get_algo("pdq")


def test_account_secrets_repr_hides_key_material() -> None:
    seed = secrets.token_bytes(32)
    acct = AccountSecrets.derive(seed, 5, 4)
    text = repr(acct) + str(acct)
    assert seed.hex() not in text and repr(seed) not in text
    assert str(acct.key_coeffs[0]) not in text and acct.xkey.hex() not in text and repr(acct.xkey) not in text


def test_write_secret_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    """A local attacker who can write the key's folder plants ``<key>.tmp`` -> a file it reads."""
    bait = tmp_path / "attacker-readable"
    bait.write_bytes(b"")
    os.chmod(bait, 0o644)
    key = tmp_path / "signing.key"
    (tmp_path / "signing.key.tmp").symlink_to(bait)
    secret = secrets.token_bytes(32)
    with contextlib.suppress(OSError):  # refusing is fine; leaking is not
        write_secret(key, secret)
    assert bait.read_bytes() == b""
    assert stat.S_IMODE(bait.stat().st_mode) == 0o644
    if key.exists():
        assert not key.is_symlink() and key.read_bytes() == secret
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_oprf_client_refuses_epoch_rollback(tmp_path: Path) -> None:
    """A server (or network with an old signed manifest) replays epoch 1 after the client saw 2."""
    hs = HashSet.from_raw(PDQ, secrets.token_bytes(32 * 16))
    state = tmp_path / "state"
    srv = OPRF.open_server(hs, state, {})
    old = {p: LocalTransport(srv).get(p).body for p in ("manifest", "filter")}
    rotate_epoch(state, hs, grace_seconds=3600)
    cache = tmp_path / "cache"
    c = OPRF.new_client(PDQ, cache, {})
    assert c.scan(Query(hs.value(0)), Tap(LocalTransport(srv))).extra["epoch"] == 2  # same origin

    def replay(method: str, path: str, rep: TransportReply) -> TransportReply:
        return TransportReply(200, old[path], rep.headers) if path in old else rep

    fresh = OPRF.new_client(PDQ, cache, {})  # a new process with the same cache
    with pytest.raises(Exception) as ei:
        fresh.scan(Query(hs.value(0)), Tap(LocalTransport(srv), replay))
    assert getattr(ei.value, "code", "") == "rollback"
    srv.close()
