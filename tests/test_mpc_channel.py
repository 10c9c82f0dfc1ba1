"""Party channels as a network observer and an active attacker see them (real sockets, real handshake)."""

from __future__ import annotations

import socket
import threading

import pytest
from blindmatch.protocol import PartyProtocolError
from blindmatch.protocol.hazmat.kex import KexKey
from blindmatch.protocol.mpc._channel import FRAME_DATA, Channel, Identity, handshake
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CONFIG = b"c" * 32
ENTRIES = (b"\xa0" * 64, b"\xa1" * 64)  # opaque to the channel: party 0 checks them in the manifest


class Tap:
    """A loopback TCP relay that records every byte each way (the observer) and may flip one."""

    def __init__(self, target: socket.socket, flip_at: int | None = None) -> None:
        self.seen = bytearray()
        self.flip_at = flip_at
        a, self.outer = _tcp_pair()
        threading.Thread(target=self._pump, args=(a, target, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(target, a, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        while True:
            try:
                data = bytearray(src.recv(65536))
            except OSError:
                return
            if not data:
                return
            if record:
                if self.flip_at is not None and len(self.seen) <= self.flip_at < len(self.seen) + len(data):
                    data[self.flip_at - len(self.seen)] ^= 1
                self.seen += data
            dst.sendall(bytes(data))


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        a = socket.create_connection(srv.getsockname())
        b, _ = srv.accept()
    return a, b


def _ident(i: int) -> Identity:
    return Identity(i, Ed25519PrivateKey.generate(), KexKey.generate())


def _pair(tap_flip: int | None = None, pin_wrong: bool = False) -> tuple[Channel, Channel, Tap]:
    p0, p1 = _ident(0), _ident(1)
    pins = {
        0: p0.signing_pub,
        1: Ed25519PrivateKey.generate().public_key().public_bytes_raw() if pin_wrong else p1.signing_pub,
    }
    s_conn, s_acc = _tcp_pair()
    tap = Tap(s_conn, tap_flip)
    out: dict[str, Channel | BaseException] = {}

    def accept() -> None:
        try:
            out["acc"] = handshake(s_acc, p0, CONFIG, pins.__getitem__, connector=False, entry=ENTRIES[0])
        except BaseException as e:
            out["acc"] = e

    t = threading.Thread(target=accept)
    t.start()
    conn = handshake(tap.outer, p1, CONFIG, pins.__getitem__, True, peer_hint=0, entry=ENTRIES[1])
    t.join()
    acc = out["acc"]
    if isinstance(acc, BaseException):
        raise acc
    return conn, acc, tap


def test_observer_sees_ciphertext_of_data_independent_size() -> None:
    conn, acc, tap = _pair()
    secret_a, secret_b = bytes(range(256)) * 40, b"\x00" * 10240
    start = len(tap.seen)
    conn.send(FRAME_DATA, b"r" * 16, secret_a)
    assert acc.recv(5)[2] == secret_a
    mid = len(tap.seen)
    conn.send(FRAME_DATA, b"r" * 16, secret_b)
    assert acc.recv(5)[2] == secret_b
    frame_a, frame_b = bytes(tap.seen[start:mid]), bytes(tap.seen[mid:])
    assert len(frame_a) == len(frame_b) == 4 + 1 + 16 + len(secret_a) + 16
    assert secret_a[:32] not in frame_a and b"\x00" * 32 not in frame_b


def test_tampered_frame_is_rejected() -> None:
    conn, acc, _tap = _pair(tap_flip=10_000)
    payload = bytes(20_000)
    conn.send(FRAME_DATA, b"r" * 16, payload)
    with pytest.raises(PartyProtocolError):
        acc.recv(5)


def test_unpinned_peer_is_refused() -> None:
    with pytest.raises(PartyProtocolError):
        _pair(pin_wrong=True)


def test_signed_manifest_entries_cross_the_handshake_authenticated() -> None:
    """Party 0 gets each peer's self-signed manifest entry from the pinned handshake; a relay
    that alters the connector's entry (bytes 73..136 of its stream) is refused."""
    conn, acc, _tap = _pair()
    assert acc.peer_entry == ENTRIES[1] and conn.peer_entry == ENTRIES[0]
    with pytest.raises(PartyProtocolError):
        _pair(tap_flip=len(b"BMMPC") + 3 + 1 + 32 + 32 + 5)
