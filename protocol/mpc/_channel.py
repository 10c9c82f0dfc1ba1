"""Authenticated, encrypted TCP channels between the three parties.

Why raw TCP and not HTTP between parties: a query is ~30 rounds of megabyte
frames; one persistent socket per pair with length-prefixed frames costs a
sendall and a recv per round, where an HTTP request would add parsing, headers
and a thread hop each time.

Handshake (pinned keys, forward secrecy)::

    connector → acceptor   MAGIC || id_c || eph_c
    acceptor  → connector  id_a || eph_a || kex_a || entry_a || Sig_a(transcript, "acceptor")
    connector → acceptor   kex_c || entry_c || Sig_c(transcript, "connector")

``eph`` are fresh X25519 keys, ``kex`` each party's static X25519 key for client
boxes, ``entry`` the party's signature over its own manifest entry (``_wire.entry_message``),
which party 0 relays to clients, Sig an Ed25519 signature by the key pinned for that
party id; the transcript
includes the configuration digest (set digest, radius, chunking), so two parties
serving different sets never pair up. HKDF over the X25519 secret gives one
AES-GCM key per direction and the pair secret from which per-query PRG keys are
derived. Frames are ``u32 length || AES-GCM(counter nonce, type || run id || payload)``:
a network observer sees ciphertext of fixed, data-independent sizes, and a
reordered, replayed or forged frame fails authentication.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import CryptoError, PartyProtocolError, PartyUnavailableError
from ..hazmat.channel import FrameCipher
from ..hazmat.kex import KexKey, hkdf_sha256

__all__ = [
    "FRAME_ABORT",
    "FRAME_DATA",
    "FRAME_RESULT",
    "FRAME_START",
    "NO_ENTRY",
    "Channel",
    "Identity",
    "handshake",
]

MAGIC = b"BMMPC\x00\x00\x02"
NO_ENTRY = bytes(64)  # sent by channels whose entry never reaches a manifest (shard workers)
FRAME_DATA, FRAME_START, FRAME_ABORT, FRAME_RESULT = 0, 1, 2, 3
MAX_FRAME = 1 << 28
_LEN = struct.Struct(">I")
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


@dataclass(frozen=True)
class Identity:
    """A party's long-term keys: Ed25519 (channel auth, manifests) and X25519 (client boxes)."""

    index: int
    signing: Ed25519PrivateKey
    kex: KexKey

    @property
    def signing_pub(self) -> bytes:
        return self.signing.public_key().public_bytes(*_RAW)

    @property
    def kex_pub(self) -> bytes:
        return self.kex.public_bytes


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise PartyUnavailableError("peer closed the connection")
        got += k
    return bytes(buf)


class Channel:
    """One encrypted duplex channel; sends are queued to a thread, receives block with a timeout."""

    def __init__(
        self,
        sock: socket.socket,
        peer: int,
        k_send: bytes,
        k_recv: bytes,
        pair_secret: bytes,
        peer_kex: bytes,
        peer_entry: bytes = NO_ENTRY,
    ) -> None:
        self.sock = sock
        self.peer = peer
        self.pair_secret = pair_secret
        self.peer_kex = peer_kex
        self.peer_entry = peer_entry
        self._send_frames, self._recv_frames = FrameCipher(k_send), FrameCipher(k_recv)
        self._q: queue.Queue[bytes | None] = queue.Queue()
        self.alive = True
        self.bytes_sent = 0
        self._thread = threading.Thread(target=self._sender, name=f"mpc-send-{peer}", daemon=True)
        self._thread.start()

    def _sender(self) -> None:
        while True:
            frame = self._q.get()
            if frame is None:
                return
            try:
                self.sock.sendall(frame)
            except OSError:
                self.alive = False
                return

    def send(self, kind: int, run_id: bytes, payload: bytes) -> None:
        if not self.alive:
            raise PartyUnavailableError(f"party {self.peer} is not connected")
        ct = self._send_frames.seal(bytes([kind]) + run_id + payload)
        self.bytes_sent += _LEN.size + len(ct)
        self._q.put(_LEN.pack(len(ct)) + ct)

    def recv(self, timeout: float) -> tuple[int, bytes, bytes]:
        """(kind, run id, payload) of the next frame."""
        if not self.alive:
            raise PartyUnavailableError(f"party {self.peer} is not connected")
        try:
            self.sock.settimeout(timeout)
            (n,) = _LEN.unpack(_recv_exact(self.sock, _LEN.size))
            if n > MAX_FRAME or n < 33:
                raise PartyProtocolError(f"frame of {n} bytes from party {self.peer}")
            ct = _recv_exact(self.sock, n)
        except (TimeoutError, OSError, PartyUnavailableError) as e:
            self.close()
            raise PartyUnavailableError(f"party {self.peer} did not answer: {type(e).__name__}") from None
        try:
            pt = self._recv_frames.open(ct)
        except CryptoError:
            self.close()
            raise PartyProtocolError(f"frame from party {self.peer} failed authentication") from None
        return pt[0], pt[1:17], pt[17:]

    def close(self) -> None:
        if self.alive:
            self.alive = False
            self._q.put(None)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _transcript(
    config: bytes, id_c: int, id_a: int, eph_c: bytes, eph_a: bytes, kex: bytes, role: bytes
) -> bytes:
    return b"blindmatch-mpc-v2/handshake" + config + bytes([id_c, id_a]) + eph_c + eph_a + kex + role


def _keys(
    shared: bytes, config: bytes, id_c: int, id_a: int, eph_c: bytes, eph_a: bytes
) -> tuple[bytes, bytes, bytes]:
    info = b"blindmatch-mpc-v1/channel" + config + bytes([id_c, id_a]) + eph_c + eph_a
    okm = hkdf_sha256(shared, 96, info)
    return okm[:32], okm[32:64], okm[64:]


def handshake(
    sock: socket.socket,
    me: Identity,
    config: bytes,
    pinned: Callable[[int], bytes],
    connector: bool,
    peer_hint: int | None = None,
    timeout: float = 10.0,
    entry: bytes = NO_ENTRY,
) -> Channel:
    """Run the handshake on a connected socket; ``pinned(i)`` is party i's Ed25519 public key.

    ``entry`` (64 bytes) is this party's signed manifest entry; the peer's is returned
    unchecked in ``Channel.peer_entry`` (party 0 checks it when it builds the manifest).
    """
    if len(entry) != 64:
        raise ValueError("a manifest entry signature is 64 bytes")
    sock.settimeout(timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    eph = KexKey.generate()
    eph_pub = eph.public_bytes
    try:
        if connector:
            assert peer_hint is not None
            sock.sendall(MAGIC + bytes([me.index]) + eph_pub)
            resp = _recv_exact(sock, 1 + 32 + 32 + 64 + 64)
            peer, eph_p, kex_p, entry_p, sig = resp[0], resp[1:33], resp[33:65], resp[65:129], resp[129:]
            if peer != peer_hint:
                raise PartyProtocolError(f"expected party {peer_hint}, got {peer}")
            _verify(
                pinned(peer),
                sig,
                _transcript(config, me.index, peer, eph_pub, eph_p, kex_p + entry_p, b"acceptor"),
            )
            mine = me.signing.sign(
                _transcript(config, me.index, peer, eph_pub, eph_p, me.kex_pub + entry, b"connector")
            )
            sock.sendall(me.kex_pub + entry + mine)
            id_c, id_a, eph_c, eph_a = me.index, peer, eph_pub, eph_p
        else:
            hello = _recv_exact(sock, len(MAGIC) + 33)
            if hello[: len(MAGIC)] != MAGIC:
                raise PartyProtocolError("not an mpc party or another protocol version")
            peer, eph_p = hello[len(MAGIC)], hello[len(MAGIC) + 1 :]
            if peer > 2 or peer == me.index:
                raise PartyProtocolError(f"unknown party {peer}")
            sig = me.signing.sign(
                _transcript(config, peer, me.index, eph_p, eph_pub, me.kex_pub + entry, b"acceptor")
            )
            sock.sendall(bytes([me.index]) + eph_pub + me.kex_pub + entry + sig)
            fin = _recv_exact(sock, 32 + 64 + 64)
            kex_p, entry_p = fin[:32], fin[32:96]
            _verify(
                pinned(peer),
                fin[96:],
                _transcript(config, peer, me.index, eph_p, eph_pub, kex_p + entry_p, b"connector"),
            )
            id_c, id_a, eph_c, eph_a = peer, me.index, eph_p, eph_pub
    except (TimeoutError, OSError) as e:
        raise PartyUnavailableError(f"handshake failed: {type(e).__name__}") from None
    try:
        shared = eph.exchange(eph_p)
    except CryptoError:
        raise PartyProtocolError("peer sent a bad ephemeral key") from None
    k_ca, k_ac, pair = _keys(shared, config, id_c, id_a, eph_c, eph_a)
    k_send, k_recv = (k_ca, k_ac) if connector else (k_ac, k_ca)
    sock.settimeout(None)
    return Channel(sock, peer, k_send, k_recv, pair, kex_p, entry_p)


def _verify(pub: bytes, sig: bytes, msg: bytes) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
    except (InvalidSignature, ValueError):
        raise PartyProtocolError("peer failed authentication (key not pinned or different set)") from None
