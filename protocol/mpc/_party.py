"""A party process: its keys, its channels to the two others, and the query loop.

Party 0 is the provider's front door: it serves the signed manifest, receives the
client's query (three sealed share boxes), relays boxes 1 and 2 to the other
parties in a START frame with a fresh run id and bit-check key, runs its share of
the circuit and returns the result boxes (client-learns) or keeps the verdict
(server-learns). Parties 1 and 2 wait for START frames from party 0. Queries run
one at a time; every frame carries the run id, so frames left over from an
aborted run are discarded, and a party that fails sends ABORT so nobody waits.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import (
    BlindmatchError,
    CryptoError,
    DecodeError,
    LengthError,
    MaliciousSharesError,
    PartyError,
    PartyProtocolError,
    PartyUnavailableError,
    UnknownModeError,
    UnknownPartyError,
)
from ..files import atomic_write
from ..hazmat.kex import KexKey
from ..keyfile import read_secret, write_secret
from ._boxes import box_keys
from ._channel import (
    FRAME_ABORT,
    FRAME_DATA,
    FRAME_RESULT,
    FRAME_START,
    NO_ENTRY,
    Channel,
    Identity,
    handshake,
)
from ._circuit import PartyCircuit, SetColumns, ShardRunner, run_party
from ._field import ELEMENT_BYTES, Vec, from_wire, to_wire
from ._sharedset import SharedColumns
from ._sharing import PairKeys, derive_component_key
from ._wire import QueryMode

__all__ = ["ERRORS", "PartyConfig", "PartyNode", "load_identity", "parse_peers", "pinned_key_reader"]

log = logging.getLogger("blindmatch.mpc")
_RELAYED = (MaliciousSharesError, CryptoError, DecodeError, LengthError, UnknownModeError, PartyProtocolError)
ERRORS: dict[str, type[BlindmatchError]] = {c.code: c for c in _RELAYED}


def parse_peers(text: str) -> list[tuple[str, int]]:
    """``HOST:PORT,HOST:PORT,HOST:PORT`` → three (host, port) pairs, party order."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) != 3:
        raise UnknownPartyError(f"--mpc-peers needs exactly three HOST:PORT entries, got {len(parts)}")
    out = []
    for p in parts:
        host, _, port = p.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UnknownPartyError(f"bad peer address {p!r}")
        out.append((host, int(port)))
    return out


def load_identity(state_dir: Path, index: int) -> Identity:
    """Party ``index``'s keys from ``state_dir`` (created on first start; ``party-I.pub`` is published)."""
    if index not in (0, 1, 2):
        raise UnknownPartyError(f"party index {index} is not 0, 1 or 2")
    sign_path, kex_path = state_dir / f"party-{index}.sign", state_dir / f"party-{index}.kex"
    if not sign_path.exists():
        write_secret(sign_path, Ed25519PrivateKey.generate().private_bytes_raw())
        write_secret(kex_path, KexKey.generate().private_bytes())
    ident = Identity(
        index,
        Ed25519PrivateKey.from_private_bytes(read_secret(sign_path, 32)),
        KexKey.from_private_bytes(read_secret(kex_path, 32)),
    )
    pub = state_dir / f"party-{index}.pub"
    if not pub.exists() or pub.read_bytes() != ident.signing_pub:
        atomic_write(pub, ident.signing_pub)
    return ident


def pinned_key_reader(state_dir: Path) -> Callable[[int], bytes]:
    """Peers' Ed25519 keys are pinned as files ``party-J.pub`` (copied there by the operator)."""

    def read(j: int) -> bytes:
        p = state_dir / f"party-{j}.pub"
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise PartyProtocolError(f"no pinned key for party {j} ({p})") from None
        if len(data) != 32:
            raise PartyProtocolError(f"pinned key {p} is not 32 bytes")
        return data

    return read


@dataclass(frozen=True)
class PartyConfig:
    index: int
    peers: list[tuple[str, int]]
    chunk: int = 1 << 19
    timeout_s: float = 120.0
    connect_wait_s: float = 3.0
    workers: int = 1
    shard: int = 0
    port_step: int = 3

    def digest(self, set_digest: bytes, algo: str, radius: int) -> bytes:
        """What both ends of a channel must agree on; names the shard when the set is split."""
        scale = b"" if self.workers == 1 else bytes([self.shard, self.workers])
        return hashlib.sha256(
            b"blindmatch-mpc-v1/config"
            + set_digest
            + algo.encode()
            + radius.to_bytes(2, "big")
            + self.chunk.to_bytes(4, "big")
            + scale
        ).digest()

    def for_shard(self, shard: int) -> PartyConfig:
        """Shard ``shard``'s configuration: every party's channel port moved by shard·port_step."""
        peers = [(host, port + shard * self.port_step) for host, port in self.peers]
        if any(port >= 65536 for _, port in peers):
            raise UnknownPartyError(f"shard {shard}'s channel port is above 65535")
        return replace(self, peers=peers, shard=shard)


@dataclass
class QueryOutcome:
    component: Vec | None  # client-learns: this party's output component
    opened: Vec | None  # server-learns at party 0: the opened values


class PartyNode:
    """Channels to both peers (connect to lower indices, accept from higher) and the circuit runner."""

    def __init__(
        self,
        ident: Identity,
        cfg: PartyConfig,
        cols: SetColumns | SharedColumns,
        bits: int,
        config_digest: bytes,
        pinned: Callable[[int], bytes],
        follow: bool = True,
        entry: bytes = NO_ENTRY,
    ) -> None:
        self.ident, self.cfg, self.cols, self.bits = ident, cfg, cols, bits
        self.config_digest, self.pinned, self.entry = config_digest, pinned, entry
        self.shards: ShardRunner | None = None
        self.channels: dict[int, Channel] = {}
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self.last_party_bytes = 0
        host, port = cfg.peers[ident.index]
        self._listener = socket.create_server((host, port), reuse_port=False)
        self._listener.settimeout(0.5)
        self._threads = [
            threading.Thread(target=self._accept_loop, daemon=True, name="mpc-accept"),
            threading.Thread(target=self._connect_loop, daemon=True, name="mpc-connect"),
        ]
        if ident.index != 0 and follow:
            self._threads.append(threading.Thread(target=self._follow_loop, daemon=True, name="mpc-follow"))
        for t in self._threads:
            t.start()

    @property
    def i(self) -> int:
        return self.ident.index

    # -- connections ------------------------------------------------------------------
    def _install(self, ch: Channel) -> None:
        with self._cv:
            old = self.channels.get(ch.peer)
            self.channels[ch.peer] = ch
            self._cv.notify_all()
        if old is not None and old is not ch:
            old.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self._install(
                    handshake(sock, self.ident, self.config_digest, self.pinned, False, entry=self.entry)
                )
            except BlindmatchError as e:
                log.warning("mpc party %d: refused a peer connection: %s", self.i, e.detail)
                sock.close()

    def _connect_loop(self) -> None:
        while not self._stop.is_set():
            for j in range(self.i):
                ch = self.channels.get(j)
                if ch is not None and ch.alive:
                    continue
                try:
                    sock = socket.create_connection(self.cfg.peers[j], timeout=2.0)
                except OSError:
                    continue
                try:
                    ch = handshake(
                        sock, self.ident, self.config_digest, self.pinned, True, j, entry=self.entry
                    )
                    self._install(ch)
                except BlindmatchError as e:
                    log.warning("mpc party %d: handshake with %d failed: %s", self.i, j, e.detail)
                    sock.close()
            self._stop.wait(0.2)

    def channel(self, j: int, wait_s: float) -> Channel:
        deadline = time.monotonic() + wait_s
        with self._cv:
            while True:
                ch = self.channels.get(j)
                if ch is not None and ch.alive:
                    return ch
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PartyUnavailableError(f"party {j} is not connected")
                self._cv.wait(left)

    def peer_entries(self, wait_s: float) -> dict[int, tuple[bytes, bytes]]:
        """Each peer's (X25519 key, signed manifest entry) from its authenticated handshake."""
        chans = {j: self.channel(j, wait_s) for j in range(3) if j != self.i}
        return {j: (ch.peer_kex, ch.peer_entry) for j, ch in chans.items()}

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for ch in list(self.channels.values()):
            ch.close()

    # -- one query ----------------------------------------------------------------------
    def _net(self, run_id: bytes) -> tuple[Callable[[int, bytes], None], Callable[[int], bytes]]:
        def send(peer: int, data: bytes) -> None:
            self.channel(peer, 0).send(FRAME_DATA, run_id, data)

        def recv(peer: int) -> bytes:
            return self._recv_frame(peer, run_id, FRAME_DATA)

        return send, recv

    def _recv_frame(self, peer: int, run_id: bytes, kind: int) -> bytes:
        ch = self.channel(peer, 0)
        while True:
            k, rid, payload = ch.recv(self.cfg.timeout_s)
            if rid != run_id:
                continue  # left over from an aborted run
            if k == FRAME_ABORT:
                code = payload.decode(errors="replace")
                raise ERRORS.get(code, PartyError)(f"party {peer} aborted the query ({code})")
            if k != kind:
                raise PartyProtocolError(f"party {peer} sent frame type {k}, expected {kind}")
            return payload

    def _abort(self, run_id: bytes, err: BlindmatchError) -> None:
        for j in range(3):
            ch = self.channels.get(j)
            if j != self.i and ch is not None and ch.alive:
                ch.send(FRAME_ABORT, run_id, err.code.encode())

    def _pair_keys(self, run_id: bytes) -> PairKeys:
        prv, nxt = (self.i - 1) % 3, (self.i + 1) % 3
        mine = derive_component_key(self.channel(prv, 0).pair_secret, run_id, self.i)
        other = derive_component_key(self.channel(nxt, 0).pair_secret, run_id, nxt)
        return PairKeys(mine, other)

    def _shares(self, plain: bytes) -> tuple[Vec, Vec]:
        n = self.bits * ELEMENT_BYTES
        if len(plain) != 2 * n:
            raise LengthError(f"share box holds {len(plain)} bytes, expected {2 * n}")
        try:
            return from_wire(plain[:n], self.bits), from_wire(plain[n:], self.bits)
        except ValueError:
            raise MaliciousSharesError("share component outside the field") from None

    def compute(self, run_id: bytes, check_key: bytes, plain: bytes, mode: QueryMode) -> QueryOutcome:
        """Run this party's share of the circuit; any failure is sent to the peers as ABORT."""
        open_to_party0 = mode.server_learns
        circuit: PartyCircuit | None = None
        sent0 = sum(ch.bytes_sent for ch in self.channels.values())
        try:
            for j in range(3):  # the circuit sends without waiting: both peers first, as the shards do
                if j != self.i:
                    self.channel(j, self.cfg.connect_wait_s)
            xa, xb = self._shares(plain)
            circuit = PartyCircuit(self.i, self._pair_keys(run_id), self._net(run_id), run_id)
            out = run_party(
                circuit, self.cols, xa, xb, check_key, open_to_party0, self.cfg.chunk, self.shards, mode.count
            )
        except BlindmatchError as e:
            self._abort(run_id, e)
            raise
        finally:
            self.last_party_bytes = sum(ch.bytes_sent for ch in self.channels.values()) - sent0
            if self.shards is not None:
                self.last_party_bytes += self.shards.last_party_bytes
        if open_to_party0:
            return QueryOutcome(None, out if self.i == 0 else None)
        return QueryOutcome(out, None)

    def evaluate_shard(self, run_id: bytes, xa: Vec, xb: Vec, count: bool) -> tuple[Vec, Vec]:
        """Shard worker: this party's share of Π f_k (or of the count) over its shard (inputs checked)."""
        sent0 = sum(ch.bytes_sent for ch in self.channels.values())
        try:
            for j in range(3):  # right after start-up the peers' shard workers may still be connecting
                if j != self.i:
                    self.channel(j, self.cfg.timeout_s)
            circuit = PartyCircuit(self.i, self._pair_keys(run_id), self._net(run_id), run_id)
            return circuit.evaluate(self.cols, xa, xb, self.cfg.chunk, count)
        except BlindmatchError as e:
            self._abort(run_id, e)
            raise
        finally:
            self.last_party_bytes = sum(ch.bytes_sent for ch in self.channels.values()) - sent0

    def lead(
        self, mode: int, eph_pub: bytes, boxes: tuple[bytes, bytes, bytes]
    ) -> tuple[QueryOutcome, dict[int, bytes], Callable[[bytes], bytes]]:
        """Party 0: open box 0, start parties 1 and 2, compute, collect their result boxes."""
        query_mode = QueryMode.from_byte(mode)
        keys = box_keys(self.ident.kex, eph_pub, eph_pub, 0, mode)
        plain = keys.open_request(boxes[0])
        run_id, check_key = secrets.token_bytes(16), secrets.token_bytes(16)
        head = check_key + bytes([mode]) + eph_pub
        for j in (1, 2):
            self.channel(j, self.cfg.connect_wait_s).send(FRAME_START, run_id, head + boxes[j])
        outcome = self.compute(run_id, check_key, plain, query_mode)
        results = {}
        if not query_mode.server_learns:
            results = {j: self._recv_frame(j, run_id, FRAME_RESULT) for j in (1, 2)}
        return outcome, results, keys.seal_reply

    def _follow_loop(self) -> None:
        while not self._stop.is_set():
            try:
                ch = self.channel(0, 1.0)
                kind, run_id, payload = ch.recv(3600.0)
            except PartyError:
                continue
            if kind != FRAME_START or len(payload) < 49:
                continue
            try:
                self._follow(run_id, payload)
            except BlindmatchError as e:
                log.info("mpc party %d: query refused: %s", self.i, e.code)

    def _follow(self, run_id: bytes, payload: bytes) -> None:
        check_key, mode, eph_pub, box = payload[:16], payload[16], payload[17:49], payload[49:]
        try:
            query_mode = QueryMode.from_byte(mode)
            keys = box_keys(self.ident.kex, eph_pub, eph_pub, self.i, mode)
            plain = keys.open_request(box)
        except BlindmatchError as e:
            self._abort(run_id, e)
            raise
        outcome = self.compute(run_id, check_key, plain, query_mode)
        if outcome.component is not None:
            reply = keys.seal_reply(to_wire(outcome.component))
            self.channel(0, 0).send(FRAME_RESULT, run_id, reply)


def matched(values: Vec) -> bool:
    return bool(np.all(values == 0))
