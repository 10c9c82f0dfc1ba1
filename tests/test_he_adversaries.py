"""``he`` against parties that cheat, played with the project's real client and server code.

* A malicious **server** in server-learns mode controls the circuit and the PSI tags,
  so every PSI slot can test any predicate of the client's bits it likes: one bit per
  slot per query. The client caps the slot count it will serve (and does no group
  operation beyond it), so the leak is bounded, not closed: server-learns is secure
  against a semi-honest server only, and opt-in.
* A malicious server replays a logged client-learns query as a server-learns
  "result": it must not get it decrypted (keys are separated per mode).
* A malicious **client** sending non-binary "bits" evaluates other linear forms of
  the set; the server's binarity check turns its answer into noise.

The adversarial server is ``HEServer`` with its reply construction replaced (it is the
party that deviates); the client halves are the real ``HEClient``.
"""

from __future__ import annotations

import math
import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from blindmatch.protocol import BlindmatchError, LocalTransport, Query, Reply, Request, get_protocol
from blindmatch.protocol.hazmat import ristretto
from blindmatch.protocol.he import HEClient, HEServer, HEServerOptions, NoiseBudgetError
from blindmatch.protocol.he._circuit import QueryEvaluator, uniform_mod
from blindmatch.protocol.he._messages import (
    ELEMENT_BYTES,
    MODE_CLIENT,
    MODE_SERVER,
    KeysMessage,
    PsiAck,
    PsiMessage,
    QueryMessage,
    ResultMessage,
)
from blindmatch.protocol.he._protocol import _Session
from blindmatch.protocol.he._worker import PSI_DST, psi_message

from blindmatch.corpus import random_set

from .he_helpers import SERVER_LEARNS

T = 65537
_HASH_TO_GROUP = ristretto.hash_to_group  # the adversary's own copy, unaffected by the spy below


class ReadingServer(HEServer):
    """Answers client-learns honestly (and logs the query); cheats in server-learns.

    Its server-learns reply has the honest shape (one group, ``claim`` PSI slots) but
    slot j decrypts to x[plan[j]] + m_j and its tag tests the guess "that bit is 1":
    H(sid, j, m_j + 1)^b. Two ways to read the answer:

    * one exponent b (the honest message flow, the real ``_psi``): the count is
      Σ_j x[plan[j]]; with bit i tested by 2^i slots it spells ⌊log2(claim + 1)⌋ bits;
    * a secret exponent b_j per slot (``per_slot``): the client cannot tell, and the
      server tests every (client element, slot) pair, so each slot answers its own
      question: ``claim`` bits per query.

    With ``replay`` set it does this to the logged client-learns ciphertext instead.
    """

    claim = 256
    replay = False
    per_slot = False
    logged: list[QueryMessage]
    read: list[bool]

    def _query(self, req: Request) -> Reply:
        q = QueryMessage.from_bytes(req.body)
        if q.mode == MODE_CLIENT:
            self.logged.append(q)
            return super()._query(req)
        target = self.logged[-1] if self.replay else q
        km = KeysMessage.from_bytes(self._resolve_keys(target))
        bfv, spec, n = self.bfv, self.spec, self.params.slots
        evk = bfv.load_eval_keys(km.public, km.relin, km.galois, spec.galois_steps)
        ev = QueryEvaluator(bfv, spec, evk, bfv.load_ciphertext(target.ciphertext))
        a = np.zeros((n, spec.bits), dtype=np.int64)
        a[self.claim :] = 1  # slots past the claim are never tested; SEAL refuses all-zero diagonals
        for j, bit in enumerate(self.plan()):
            if bit >= 0:
                a[j, bit] = 1
        mask = uniform_mod(n, T)
        raw = ev.finish(ev.linear(a, np.zeros(n, dtype=np.int64)), np.ones(n, dtype=np.int64), mask)
        sid = secrets.token_bytes(16)
        self.exponents = [ristretto.random_scalar() for _ in range(self.claim if self.per_slot else 1)]
        tags = b"".join(
            ristretto.scalar_mult(self.exponents[j % len(self.exponents)],
                                  _HASH_TO_GROUP(psi_message(sid, j, int(mask[j] + 1) % T), PSI_DST))
            for j in range(self.claim)
        )
        self._sessions[sid] = _Session(self.exponents[0], self.claim, req.client_id, False, time.time())
        body = ResultMessage(MODE_SERVER, 1, self.claim, self.params.output_primes, sid,
                             raw.astype("<u8").tobytes(), tags)
        return Reply(body.to_bytes())

    def plan(self) -> list[int]:
        """The hash bit slot j reads (−1: none)."""
        if self.per_slot:
            return [j % self.spec.bits for j in range(self.claim)]
        return read_plan(self.claim)

    def _psi(self, req: Request) -> Reply:
        if not self.per_slot:
            return super()._psi(req)
        msg = PsiMessage.from_bytes(req.body, self.psi_max_slots)
        eb = ELEMENT_BYTES
        theirs = [msg.blinded[i : i + eb] for i in range(0, len(msg.blinded), eb)]
        doubled = {msg.doubled[i : i + eb] for i in range(0, len(msg.doubled), eb)}
        self.read = [any(ristretto.scalar_mult(b, e) in doubled for e in theirs) for b in self.exponents]
        return Reply(PsiAck().to_bytes())


def read_plan(slots: int) -> list[int]:
    """Bit i of the hash tested by 2^i slots, as many bits as fit; −1 = slot tests nothing."""
    plan: list[int] = []
    bit = 0
    while len(plan) + (1 << bit) <= slots:
        plan += [bit] * (1 << bit)
        bit += 1
    return plan + [-1] * (slots - len(plan))


def bits_read(count: int, slots: int) -> list[int]:
    """The hash bits a PSI count spells out under ``read_plan(slots)``."""
    width = max(b for b in read_plan(slots) if b >= 0) + 1
    return [(count >> i) & 1 for i in range(width)]


@pytest.fixture(scope="module")
def reading(tmp_path_factory: pytest.TempPathFactory):
    hs = random_set(120, "phash", seed=14)
    state = Path(tmp_path_factory.getbasetemp()) / "he-state-phash"
    srv = ReadingServer(hs, state, HEServerOptions(workers=1))
    srv.logged = []
    yield hs, srv
    srv.close()


class CountingHashToGroup:
    """Wraps the real hash-to-group to count the client's calls (no behaviour change)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, msg: bytes, dst: bytes) -> bytes:
        self.calls += 1
        return _HASH_TO_GROUP(msg, dst)


def _attack(srv: ReadingServer, client: HEClient, query: Any, claim: int) -> list[int] | BlindmatchError:
    """One server-learns scan against the reading server: the bits it read, or the client's refusal.

    Per-slot mode returns the bit each slot read (slot j reads bit j mod n).
    """
    srv.claim = claim
    before = len(srv.verdicts())
    srv.read = []
    try:
        client.scan(Query(query), LocalTransport(srv))
    except BlindmatchError as e:
        assert len(srv.verdicts()) == before and not srv.read  # no PSI message reached the server
        return e
    if srv.per_slot:
        return [int(b) for b in srv.read]
    v = srv.verdicts()[before:]
    assert len(v) == 1
    return bits_read(v[0].matches, claim)


def test_malicious_server_reads_at_most_one_bit_per_capped_slot(
    reading, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items 1 and 9. A reply with more slots than the parameters announce is refused
    before any group operation. Within the cap the leak is real and this test pins its
    size: with one exponent the count gives ⌊log2(cap + 1)⌋ bits; with a secret exponent
    per slot (which the client cannot detect) each slot answers one question, so a
    malicious server reads ``cap`` bits per query — here the whole 64-bit hash."""
    hs, srv = reading
    spy = CountingHashToGroup()
    monkeypatch.setattr(ristretto, "hash_to_group", spy)
    x = np.random.default_rng(3).integers(0, 2, 64).astype(np.uint8)
    q = hs.algo.from_bytes(np.packbits(x).tobytes())
    client = get_protocol("he").new_client(hs.algo, tmp_path, SERVER_LEARNS)
    # an honest-looking reply of a whole group: 16384 slots, 14 bits of the hash from the count
    learned = _attack(srv, client, q, 16384)
    assert isinstance(learned, BlindmatchError), (
        f"server read {len(learned)} bits of the client's hash in one query: {learned}"
    )
    assert spy.calls == 0, f"client hashed {spy.calls} PSI slots for a refused reply"
    cap = srv.psi_slots  # the padded set size, announced in the parameters
    assert cap == 256
    learned = _attack(srv, client, q, cap)
    assert isinstance(learned, list) and len(learned) == 8 == math.floor(math.log2(cap + 1))
    assert learned == x[:8].tolist()
    assert spy.calls == cap
    srv.per_slot = True
    try:
        learned = _attack(srv, client, q, cap)
    finally:
        srv.per_slot = False
    assert isinstance(learned, list) and len(learned) == cap  # one answer per slot, no more
    assert learned == [int(x[j % 64]) for j in range(cap)]  # the whole hash, four times over
    assert spy.calls == 2 * cap
    # parameters announcing more slots than the client's own cap are refused up front
    small = get_protocol("he").new_client(hs.algo, tmp_path, {**SERVER_LEARNS, "max_psi_slots": cap - 1})
    assert isinstance(_attack(srv, small, q, cap), BlindmatchError)
    assert spy.calls == 2 * cap


def test_server_learns_needs_explicit_opt_in(reading, tmp_path: Path) -> None:
    hs, _ = reading
    with pytest.raises(BlindmatchError, match="semi-honest"):
        get_protocol("he").new_client(hs.algo, tmp_path, {"mode": "server-learns"})


def test_logged_client_learns_query_is_not_decrypted_for_the_server(reading, tmp_path: Path) -> None:
    """Item 2: replaying a client-learns ciphertext as a server-learns result reveals nothing."""
    hs, srv = reading
    rng = np.random.default_rng(4)
    x = rng.integers(0, 2, 64).astype(np.uint8)
    secret_query = hs.algo.from_bytes(np.packbits(x).tobytes())
    cache = tmp_path / "app"  # one app, one cache directory, both modes
    first = get_protocol("he").new_client(hs.algo, cache, {})
    first.scan(Query(secret_query), LocalTransport(srv))
    later = get_protocol("he").new_client(hs.algo, cache, SERVER_LEARNS)
    srv.replay, srv.per_slot = True, True
    try:
        learned = _attack(srv, later, hs.value(0), 256)
    finally:
        srv.replay, srv.per_slot = False, False
    assert not isinstance(learned, list) or learned != [int(x[j % 64]) for j in range(256)], (
        f"server decrypted an earlier client-learns query: {np.packbits(learned[:64]).tobytes().hex()}"
        f" (it was {np.packbits(x).tobytes().hex()})"
    )
    # the reply does not decrypt under the session key, and the client says so
    assert isinstance(learned, NoiseBudgetError)
    assert later._digest != first._digest
    assert all(d.name.startswith("client-learns-") for d in (cache / "he").iterdir())  # none on disk
    # a second server-learns client (a new session) gets fresh keys again
    again = get_protocol("he").new_client(hs.algo, cache, SERVER_LEARNS)
    again.scan(Query(hs.value(1)), LocalTransport(srv))
    assert again._digest not in (first._digest, later._digest)


# ------------------------------------------------------------------ malicious client


def _crafted_scan(client: HEClient, srv: HEServer, slots: np.ndarray) -> np.ndarray:
    """Send an arbitrary slot vector under the client's real keys; decrypt as the client does."""
    client.scan(Query(random_set(1, "phash", seed=1).value(0)), LocalTransport(srv))  # keys, params
    keys, bfv, p = client._keys, client._bfv, client._params
    assert keys is not None and bfv is not None and p is not None
    msg = QueryMessage(p.param_set, p.algo_id, MODE_CLIENT, client._digest, b"",
                       keys.encrypt_symmetric(slots))
    res = ResultMessage.from_bytes(LocalTransport(srv).post("query", msg.to_bytes()).body,
                                   bfv.params.poly_degree, 64)
    out = [keys.decrypt(bfv.import_raw(raw, bfv.output_parms_id))[0]
           for raw in res.ciphertexts(bfv.params.poly_degree)]
    return np.concatenate(out)


def test_non_binary_query_yields_only_noise(he_phash_server, tmp_path: Path) -> None:
    """Item 7: x_i = 1/2 (mod t) makes w = n − r whatever the entry; shifting x_0 turns the
    zero test into "entry has bit 0 set", a count no binary query gives."""
    hs, srv = he_phash_server
    n, r = srv.spec.bits, srv.spec.radius
    assert r % 2 == 0 and (n - r) % 2 == 0  # so w = 0 (a root) exactly when bit 0 is set
    half = (T + 1) // 2
    x = np.full(n, half, dtype=np.int64)
    x[0] = (half + (n - r) // 2) % T
    client = get_protocol("he").new_client(hs.algo, tmp_path, {})
    slots = _crafted_scan(client, srv, np.tile(x, 16384 // n))
    rows = np.unpackbits(np.frombuffer(hs.raw(), dtype=np.uint8).reshape(len(hs), -1), axis=1)
    with_bit0 = int(rows[:, 0].sum())
    zeros = int(np.count_nonzero(slots == 0))
    assert 20 < with_bit0 < 100
    # noise: a uniform slot is 0 with probability 1/t, so 16384 slots give 0.25 zeros on average
    assert zeros <= 5, f"crafted query counted {zeros} entries with bit 0 set (truth {with_bit0})"
    counts = np.histogram(slots, bins=16, range=(0, T))[0]
    assert float(((counts - 1024) ** 2 / 1024).sum()) < 60  # uniform, χ²(15)
