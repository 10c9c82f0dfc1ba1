"""``he``: fuzzy private matching (Hamming distance ≤ r) under BFV, revealing only the verdict.

After Kulshrestha & Mayer's PAMC (USENIX Security 2021): the client encrypts its
hash bits under its own BFV key; the server computes every encrypted distance to
its set with a packing in which one plaintext×ciphertext product serves N set
entries (``_he_circuit``), turns each distance into a masked zero test
ρ·P(2d − r) that is 0 exactly when d ≤ r and uniform in Z_t^* otherwise, places
entries in slots by a fresh random permutation, re-randomises and floods the
noise. Two modes:

* ``client-learns`` (default): the client decrypts and counts zero slots. It
  learns the number k of set entries within r and nothing else (proof in
  docs/protocols/he.md); the server learns nothing (IND-CPA).
* ``server-learns``: the server also adds a uniform mask m_j, so the client's
  decryptions v_j = ρ_j·P + m_j are uniform. A DH-PSI-cardinality on ristretto255
  then tells the server |{j : v_j = m_j}| = k: the client sends H(sid,j,v_j)^a and
  (H(sid,j,m_j)^b)^a, each shuffled. Sending anything computable from v_j without
  a secret exponent would let the server try all 257 distances per slot and
  recover the client's hash (the attack in the docs).

Optional LSH bucketing (``_lsh``) shrinks the scan to candidates at the price of
revealing the client's bits at the sampled positions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..base import (
    ClientHalf,
    Endpoint,
    Leakage,
    Learner,
    Matching,
    Protocol,
    Query,
    Reply,
    Request,
    ScanResult,
    ServerHalf,
    ServerVerdict,
    Transport,
    elapsed_ms,
    register,
)
from ..costfloor import CostFloor, Floor, Term
from ..errors import (
    BadHashError,
    BlindmatchError,
    DecodeError,
    InputError,
    LengthError,
    OptionError,
    ParameterError,
)
from ..files import atomic_write, atomic_writer
from ..hashes import ALGO_IDS, HashAlgo, HashSet
from ..hazmat import ristretto
from ..hazmat.bfv import Bfv, KeyMaterial, ParamSet, check_seal_blob, get_param_set, param_set_by_id
from ..keyfile import read_secret, write_secret
from ..options import OptionsIn
from ._circuit import CircuitSpec, default_baby_step
from ._errors import (
    KeysRejectedError,
    ModeNotAllowedError,
    NoiseBudgetError,
    PsiSlotsError,
    UnknownKeysError,
    UnknownSessionError,
    WorkerCrashedError,
    WorkerError,
    WorkerMemoryError,
    WorkerTimeoutError,
    WrongParametersError,
)
from ._heap import map_large_buffers
from ._keycache import KeyCache
from ._lsh import LshIndex, LshParams
from ._messages import (
    ELEMENT_BYTES,
    MODE_CLIENT,
    MODE_SERVER,
    PROTOCOL_ID,
    KeysMessage,
    ParamsMessage,
    PsiAck,
    PsiMessage,
    QueryMessage,
    ResultMessage,
    key_digest,
)
from ._noise import noise_report, shared_noise_file
from ._options import HEClientOptions, HEServerOptions
from ._worker import PSI_DST, GroupTask, Job, JobResult, WorkerPool, psi_message

__all__ = [
    "HE",
    "MODES",
    "HEClient",
    "HEClientOptions",
    "HEServer",
    "HEServerOptions",
    "KeysRejectedError",
    "ModeNotAllowedError",
    "NoiseBudgetError",
    "PsiSlotsError",
    "UnknownKeysError",
    "UnknownSessionError",
    "Verdict",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerMemoryError",
    "WorkerTimeoutError",
    "WrongParametersError",
    "secure_permutation",
    "slot_layout",
]

MODES = {"client-learns": MODE_CLIENT, "server-learns": MODE_SERVER}
_DEFAULT_LSH = {256: (6, 8), 64: (4, 6)}


def _default_param_set(algo: HashAlgo) -> str:
    return "bfv-n8192-v1" if algo.default_threshold == 0 and algo.bits == 256 else "bfv-n16384-v1"


def secure_permutation(n: int) -> npt.NDArray[np.int64]:
    """Uniform permutation of range(n): argsort of 64-bit keys from ``secrets``."""
    keys = np.frombuffer(secrets.token_bytes(8 * n), dtype=np.uint64)
    out: npt.NDArray[np.int64] = np.argsort(keys, kind="stable").astype(np.int64)
    return out


def slot_layout(candidates: npt.NDArray[np.int64], slots: int, compact: bool) -> npt.NDArray[np.int64]:
    """Per-query placement of set rows into ⌈n/slots⌉·slots slots (−1 = empty).

    Spread (client-learns): rows go to uniformly random distinct slots among all
    slots, so a zero's position says nothing about which entry matched, nor about
    the exact set size. Compact (server-learns): rows fill the first n slots in
    random order, so the DH-PSI runs over n slots, not over the padding.
    """
    n = int(candidates.size)
    groups = max(1, math.ceil(n / slots))
    out = np.full(groups * slots, -1, dtype=np.int64)
    if n:
        if compact:
            out[:n] = candidates[secure_permutation(n)]
        else:
            out[secure_permutation(groups * slots)[:n]] = candidates
    return out


@dataclass(frozen=True)
class Verdict:
    """What a server-learns query told the server (kept for admins and tests)."""

    session: str
    client_id: str
    matched: bool
    matches: int
    slots: int
    bucketed: bool
    at: float


@dataclass
class _Session:
    scalar: bytes
    used: int
    client_id: str
    bucketed: bool
    created: float


def _ranged(name: str, value: int | None, default: int, hi: int) -> int:
    """An option whose upper bound depends on the hash size (None: ``default``)."""
    v = default if value is None else value
    if not 0 <= v <= hi:
        raise OptionError(f"he option {name!r}={v} outside [0, {hi}]")
    return v


def _default_lsh(algo: HashAlgo) -> tuple[int, int]:
    """(sampled bits per table, tables) for the algorithm's hash size and radius."""
    return _DEFAULT_LSH.get(algo.bits, (16, 1)) if algo.default_threshold else (16, 1)


class HEServer(ServerHalf):
    """Holds the set, the worker pool, the key cache and the server-learns sessions."""

    def __init__(self, hashes: HashSet, state_dir: Path, options: HEServerOptions) -> None:
        o = options
        algo = hashes.algo
        self.algo = algo
        self.hashes = hashes
        self.params: ParamSet = get_param_set(o.param_set or _default_param_set(algo))
        radius = _ranged("radius", o.radius, algo.default_threshold, algo.bits - 1)
        baby = _ranged("baby_step", o.baby_step, default_baby_step(algo.bits), algo.bits)
        self.spec = CircuitSpec(algo.bits, radius, baby)
        self.bfv = Bfv.create(self.params)
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.noise = noise_report(
            self.bfv, self.spec, self.state_dir, shared_noise_file(o.noise_cache_dir), o.recheck_noise
        )
        try:
            self.modes = {MODES[m.strip()] for m in o.modes.split(",") if m.strip()}
        except KeyError:
            raise OptionError(f"he option modes={o.modes!r}: choose from {sorted(MODES)}") from None
        if not self.modes:
            raise OptionError("he needs at least one mode")
        self.psi_max_slots = o.psi_max_slots
        self.psi_pad = o.psi_pad
        self.timeout_base = o.worker_timeout_s
        self.timeout_per_group = o.worker_timeout_per_group_s
        self.session_ttl = o.session_ttl_s
        set_bits = np.unpackbits(np.frombuffer(hashes.raw(), dtype=np.uint8).reshape(len(hashes), -1), axis=1)
        self.lsh: LshIndex | None = None
        if o.lsh:
            k, tables = _default_lsh(algo)
            self.lsh = LshIndex(self._lsh_params(o.lsh_k or k, o.lsh_tables or tables), set_bits)
        self.groups = max(1, math.ceil(len(hashes) / self.params.slots))
        self.psi_slots = 0  # the cap a server-learns client enforces; every honest reply is within it
        if MODE_SERVER in self.modes:
            self.psi_slots = min(self._psi_used(len(hashes)), self.psi_max_slots)
        workers = o.workers or os.cpu_count() or 1
        memory_mb = o.worker_memory_mb
        map_large_buffers()  # key bundles come and go; see _heap
        self.pool = WorkerPool(str(self._write_set()), workers, memory_mb)
        self._params_bytes = self._build_params().to_bytes()
        self._etag = '"' + hashlib.sha256(self._params_bytes).hexdigest()[:32] + '"'
        self._lock = threading.Lock()
        # one cache per mode: a server-learns bundle serves one client session only, so it
        # must not push out client-learns bundles that are reused for the client's lifetime
        self.key_caches = {
            MODE_CLIENT: KeyCache(o.key_cache_mb << 20),
            MODE_SERVER: KeyCache(o.session_key_cache_mb << 20, o.session_ttl_s),
        }
        self._sessions: dict[bytes, _Session] = {}
        self._verdicts: list[Verdict] = []
        self.last_stats: dict[str, Any] = {}

    # -- set-up --------------------------------------------------------------------
    def _write_set(self) -> Path:
        raw = self.hashes.raw()
        digest = hashlib.sha256(raw).hexdigest()
        path = self.state_dir / f"set-{digest[:16]}.npy"
        if path.exists() and not _npy_matches(path, digest):
            path.unlink()  # a damaged worker cache is rebuilt from the verified set, never trusted
        if not path.exists():
            with atomic_writer(path) as fh:
                np.save(fh, np.frombuffer(raw, dtype=np.uint8).reshape(len(self.hashes), -1))
        return path

    def _lsh_params(self, k: int, tables: int) -> LshParams:
        """Positions persist in the state dir so restarts and sibling processes agree."""
        path = self.state_dir / "lsh.json"
        if path.exists():
            try:
                d = json.loads(path.read_text())
                p = LshParams(int(d["bits"]), tuple(tuple(int(x) for x in r) for r in d["positions"]))
                if p.bits == self.algo.bits and p.k == k and p.tables == tables:
                    return p
            except (OSError, ValueError, KeyError, TypeError):
                pass
        p = LshParams.generate(self.algo.bits, k, tables)
        atomic_write(path, json.dumps({"bits": p.bits, "positions": [list(r) for r in p.positions]}))
        return p

    def _build_params(self) -> ParamsMessage:
        modes = sum(1 << (m - 1) for m in self.modes)
        return ParamsMessage(
            param_set=self.params.set_id,
            algo_id=ALGO_IDS[self.algo.name],
            radius=self.spec.radius,
            bits=self.spec.bits,
            baby=self.spec.baby,
            modes=modes,
            lsh_offered=self.lsh is not None,
            poly_degree=self.params.poly_degree,
            plain_modulus=self.params.plain_modulus,
            primes=self.bfv.primes,
            groups=self.groups,
            lsh_positions=self.lsh.params.positions if self.lsh else (),
            psi_slots=self.psi_slots,
        )

    def _psi_used(self, candidates: int) -> int:
        """PSI slots of a server-learns scan: candidates rounded up to ``psi_pad``, within the groups."""
        groups = max(1, math.ceil(candidates / self.params.slots))
        return min(groups * self.params.slots, max(1, math.ceil(candidates / self.psi_pad)) * self.psi_pad)

    # -- endpoints -------------------------------------------------------------------
    def endpoints(self) -> Sequence[Endpoint]:
        p = self.params
        keys_cap = p.public_key_bytes() + (1 + len(self.spec.galois_steps)) * p.kswitch_key_bytes()
        query_cap = keys_cap + p.ciphertext_bytes() + 64 * 1024
        psi_cap = 2 * self.psi_max_slots * ELEMENT_BYTES + 1024
        return [
            Endpoint(
                "GET", "params", self._get_params, max_body=1024,
                summary="BFV parameters, radius, LSH tables",
            ),
            Endpoint(
                "POST", "query", self._query, max_body=query_cap, rate_limited=True,
                cost=self._query_cost,
                summary="Encrypted hash (+ evaluation keys once): ~0.8 MB, or ~19 MB with keys",
            ),
            Endpoint(
                "POST", "psi", self._psi, max_body=psi_cap, rate_limited=True,
                summary="server-learns: DH-PSI cardinality on the decrypted masked slots",
            ),
            Endpoint("GET", "verdicts", self._get_verdicts, max_body=1024, admin=True,
                     summary="server-learns verdicts recorded so far (admin)"),
        ]

    def setup_bytes(self) -> int:
        return len(self._params_bytes)

    def _get_params(self, req: Request) -> Reply:
        headers = {"etag": self._etag, "cache-control": "no-cache"}
        if req.headers.get("if-none-match") == self._etag:
            return Reply(b"", status=304, headers=headers)
        return Reply(self._params_bytes, headers=headers)

    def _query_cost(self, body: bytes) -> int:
        """Rate-limit tokens: one per result group a full scan will touch."""
        # wire header (4) + u32 length (4) + query header (4): the 4th header byte flags LSH
        bucketed = len(body) > 11 and body[:3] == bytes([1, PROTOCOL_ID, 2]) and body[11] == 1
        return 1 if bucketed else self.groups

    def _resolve_keys(self, q: QueryMessage) -> bytes:
        if q.keys:
            if key_digest(q.keys) != q.digest:
                raise DecodeError("evaluation keys do not match their digest")
            km = KeysMessage.from_bytes(q.keys)
            p = self.params
            check_seal_blob(km.public, p.public_key_bytes() + 4096, "public key")
            check_seal_blob(km.relin, p.kswitch_key_bytes() + 4096, "relinearisation key")
            if self.spec.galois_steps:
                cap = len(self.spec.galois_steps) * (p.kswitch_key_bytes() + 4096)
                check_seal_blob(km.galois, cap, "Galois keys")
            elif km.galois:
                raise DecodeError("Galois keys sent but none needed")
            self.key_caches[q.mode].put(q.digest, q.keys)
            return q.keys
        keys = self.key_caches[q.mode].get(q.digest)
        if keys is None:
            raise UnknownKeysError("evaluation keys not cached here (evicted or never sent); send them again")
        return keys

    def _query(self, req: Request) -> Reply:
        t_start = time.perf_counter()
        q = QueryMessage.from_bytes(req.body)
        if q.param_set != self.params.set_id:
            raise WrongParametersError(f"this server uses BFV parameter set {self.params.name}")
        if q.algo_id != ALGO_IDS[self.algo.name]:
            raise WrongParametersError(f"this server holds {self.algo.name} hashes")
        if q.mode not in self.modes:
            raise ModeNotAllowedError("this server does not offer that mode")
        check_seal_blob(q.ciphertext, self.params.ciphertext_bytes() + 4096, "query ciphertext")
        keys = self._resolve_keys(q)
        if q.bucket_ids:
            if self.lsh is None:
                raise ModeNotAllowedError("this server does not offer bucketed queries")
            candidates = self.lsh.candidates(list(q.bucket_ids))
        else:
            candidates = np.arange(len(self.hashes), dtype=np.int64)
        server_learns = q.mode == MODE_SERVER
        n = self.params.slots
        layout = slot_layout(candidates, n, compact=server_learns)
        groups = layout.size // n
        used = 0
        sid, scalar = b"", b""
        if server_learns:
            used = self._psi_used(int(candidates.size))
            if used > self.psi_max_slots:
                raise InputError(
                    f"server-learns over {candidates.size} entries exceeds the DH-PSI cap "
                    f"({self.psi_max_slots} slots); use a bucketed query"
                )
            sid, scalar = secrets.token_bytes(16), ristretto.random_scalar()
        tasks = [GroupTask(g, layout[g * n : (g + 1) * n]) for g in range(groups)]
        chunks = [tasks[i :: self.pool.workers] for i in range(min(self.pool.workers, groups))]
        timeout = self.timeout_base + self.timeout_per_group * max(len(c) for c in chunks)
        jobs = [
            Job(
                self.params.name, self.spec.bits, self.spec.radius, self.spec.baby, q.digest, keys,
                q.ciphertext, tuple(c), server_learns, sid, scalar, used, cpu_limit_s=timeout,
            )
            for c in chunks
        ]
        t_eval = time.perf_counter()
        try:
            results = self.pool.run(jobs, timeout)
        except KeysRejectedError:
            self.key_caches[q.mode].pop(q.digest)
            raise
        eval_s = time.perf_counter() - t_eval
        by_index = {gr.index: gr for r in results for gr in r.groups}
        raw = b"".join(by_index[g].raw.astype("<u8").tobytes() for g in range(groups))
        elements = b"".join(by_index[g].elements for g in range(groups))
        if server_learns:
            self._add_session(sid, _Session(scalar, used, req.client_id, bool(q.bucket_ids), time.time()))
        body = ResultMessage(
            q.mode, groups, used, self.params.output_primes, sid, raw, elements
        ).to_bytes()
        self.last_stats = self._stats(results, candidates.size, groups, eval_s, t_start, bool(q.bucket_ids))
        return Reply(body)

    def _stats(
        self, results: list[JobResult], candidates: int, groups: int, eval_s: float, t0: float, bucketed: bool
    ) -> dict[str, Any]:
        keys = ("baby_s", "binarity_s", "diag_encode_s", "diag_mult_s", "giant_s", "poly_s", "finish_s",
                "load_s", "psi_s", "cpu_s", "products", "rotations", "ct_mults")
        total = {k: sum(r.timings.get(k, 0.0) for r in results) for k in keys}
        return {
            "candidates": int(candidates), "groups": groups, "jobs": len(results), "bucketed": bucketed,
            "eval_wall_s": eval_s, "handler_wall_s": time.perf_counter() - t0, **total,
        }

    def _add_session(self, sid: bytes, s: _Session) -> None:
        now = time.time()
        with self._lock:
            for k in [k for k, v in self._sessions.items() if now - v.created > self.session_ttl]:
                del self._sessions[k]
            while len(self._sessions) >= 4096:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[sid] = s

    def _psi(self, req: Request) -> Reply:
        msg = PsiMessage.from_bytes(req.body, self.psi_max_slots)
        with self._lock:
            s = self._sessions.get(msg.sid)
            if s is None or time.time() - s.created > self.session_ttl or s.client_id != req.client_id:
                raise UnknownSessionError("no pending server-learns session with that id")
            del self._sessions[msg.sid]  # one attempt per session
        if msg.count() != s.used:
            raise LengthError(f"expected {s.used} PSI elements per list, got {msg.count()}")
        eb = ELEMENT_BYTES
        blinded = [ristretto.decode_element(msg.blinded[i : i + eb]) for i in range(0, len(msg.blinded), eb)]
        doubled = {ristretto.decode_element(msg.doubled[i : i + eb]) for i in range(0, len(msg.doubled), eb)}
        matches = sum(1 for a in blinded if ristretto.scalar_mult(s.scalar, a) in doubled)
        v = Verdict(msg.sid.hex(), req.client_id, matches > 0, matches, s.used, s.bucketed, time.time())
        with self._lock:
            self._verdicts.append(v)
            del self._verdicts[:-10000]
        return Reply(PsiAck().to_bytes())

    def verdicts(self) -> list[Verdict]:
        """Server-learns verdicts recorded so far (newest last)."""
        with self._lock:
            return list(self._verdicts)

    def stats(self) -> dict[str, Any]:
        """The last query's candidate count, groups, timings (``last_stats``)."""
        return dict(self.last_stats)

    def server_verdicts(self, account: str) -> list[ServerVerdict]:
        """Server-learns verdicts of queries from client id ``account`` (the last 10,000 kept)."""
        return [ServerVerdict(v.matched, None, v.at) for v in self.verdicts() if v.client_id == account]

    def _get_verdicts(self, req: Request) -> Reply:
        body = json.dumps([asdict(v) for v in self.verdicts()]).encode()
        return Reply(body, media_type="application/json")

    def close(self) -> None:
        self.pool.close()


# ====================================================================== client


class HEClient(ClientHalf):
    """Encrypts under its own BFV key; decrypts the zero test (or runs the DH-PSI).

    Keys are separated by mode. Client-learns keys persist in the cache directory;
    server-learns keys live in memory for this client object only, so nothing ever
    encrypted under a client-learns key (or in an earlier session) is decrypted and
    fed to the PSI on a server's behalf. Server-learns is opt-in
    (``allow_server_learns``): a malicious server can make each PSI slot answer one
    question about the hash, so the client caps the slots at the ``psi_slots`` the
    server's parameters announce (and ``max_psi_slots``).
    """

    def __init__(self, algo: HashAlgo, cache_dir: Path | None, options: HEClientOptions) -> None:
        self.algo = algo
        self.mode = MODES[options.mode]
        if self.mode == MODE_SERVER and not options.allow_server_learns:
            raise ModeNotAllowedError(
                "he server-learns protects the hash against a semi-honest server only (a malicious "
                "one reads up to one bit per PSI slot per query); pass allow_server_learns to opt in"
            )
        self.bucketed = options.bucketed
        self.max_groups = options.max_groups
        self.max_psi_slots = options.max_psi_slots
        self.cache_dir = Path(cache_dir) / "he" if cache_dir is not None else None
        self._params: ParamsMessage | None = None
        self._etag: str | None = None
        self._bfv: Bfv | None = None
        self._keys: KeyMaterial | None = None
        self._keys_bytes = b""
        self._digest = b""
        self._sent = False
        self.keygen_ms = 0.0

    # -- one-time state ------------------------------------------------------------
    def _fetch_params(self, transport: Transport) -> ParamsMessage:
        headers = {"if-none-match": self._etag} if self._etag and self._params else None
        rep = transport.get("params", headers)
        if rep.status == 304 and self._params is not None:
            return self._params
        p = ParamsMessage.from_bytes(rep.body)
        self._validate(p)
        if self._params is not None and p != self._params:
            self._keys, self._sent = None, False
        self._params = p
        self._etag = {k.lower(): v for k, v in rep.headers.items()}.get("etag")
        return p

    def _validate(self, p: ParamsMessage) -> None:
        """Accept only our own named parameter sets, exactly as we would build them."""
        ps = param_set_by_id(p.param_set)
        if self._bfv is None or self._bfv.params != ps:
            self._bfv = Bfv.create(ps)
        bfv = self._bfv
        if (p.poly_degree, p.plain_modulus, p.primes) != (ps.poly_degree, ps.plain_modulus, bfv.primes):
            raise ParameterError("server's BFV parameters differ from the named set")
        if p.algo_id != ALGO_IDS[self.algo.name] or p.bits != self.algo.bits:
            raise WrongParametersError(f"server holds another hash algorithm (id {p.algo_id})")
        CircuitSpec(p.bits, p.radius, p.baby).check_fits(bfv)
        if not 1 <= p.groups <= self.max_groups:
            raise ParameterError(f"server set needs {p.groups} result ciphertexts (cap {self.max_groups})")
        if not p.modes & (1 << (self.mode - 1)):
            raise ModeNotAllowedError("the server does not offer this mode")
        if p.psi_slots > p.groups * p.poly_degree or (p.modes & 2) != (2 if p.psi_slots else 0):
            raise ParameterError("server's PSI slot count does not fit its parameters")
        if self.mode == MODE_SERVER and p.psi_slots > self.max_psi_slots:
            raise ParameterError(
                f"server-learns over {p.psi_slots} PSI slots exceeds this client's cap ({self.max_psi_slots})"
            )
        if self.bucketed and not p.lsh_offered:
            raise ModeNotAllowedError("the server does not offer bucketed queries")
        if p.lsh_positions:
            LshParams(p.bits, p.lsh_positions)

    def _key_material(self, p: ParamsMessage) -> KeyMaterial:
        steps = CircuitSpec(p.bits, p.radius, p.baby).galois_steps
        if self._keys is not None and self._keys.galois_steps == steps:
            return self._keys
        assert self._bfv is not None
        bfv = self._bfv
        # client-learns keys only (the tag names the mode, so keys cached before modes were
        # separated, which may have served server-learns, are never picked up again)
        tag = f"client-learns-{bfv.params.name}-steps{'-'.join(map(str, steps)) or '0'}"
        d = self.cache_dir / tag if self.cache_dir and self.mode == MODE_CLIENT else None
        keys: KeyMaterial | None = None
        if d is not None and (d / "secret.key").exists():
            try:
                pub, rel, gal = ((d / f).read_bytes() for f in ("public.bin", "relin.bin", "galois.bin"))
                keys = KeyMaterial.restore(bfv, read_secret(d / "secret.key"), pub, rel, gal, steps)
            except (OSError, ParameterError):
                keys = None
        if keys is None:
            t0 = time.perf_counter()
            keys = bfv.keygen(steps)
            self.keygen_ms = elapsed_ms(t0)
            if d is not None:
                d.mkdir(parents=True, exist_ok=True)
                write_secret(d / "secret.key", keys.secret_bytes())
                for name, blob in (("public.bin", keys.public_blob), ("relin.bin", keys.relin_blob),
                                   ("galois.bin", keys.galois_blob)):
                    (d / name).write_bytes(blob)
        self._keys = keys
        self._keys_bytes = KeysMessage(keys.public_blob, keys.relin_blob, keys.galois_blob).to_bytes()
        self._digest = key_digest(self._keys_bytes)
        self._sent = False
        return keys

    # -- one query -------------------------------------------------------------------
    def scan(self, query: Query, transport: Transport) -> ScanResult:
        if query.hash.algo != self.algo:
            raise BadHashError(f"client set up for {self.algo.name}, query is {query.hash.algo.name}")
        up0, down0 = transport.bytes_up, transport.bytes_down
        p = self._fetch_params(transport)
        keys = self._key_material(p)
        assert self._bfv is not None
        bfv = self._bfv
        t0 = time.perf_counter()
        x = query.hash.bits().astype(np.int64)
        ct = keys.encrypt_symmetric(np.tile(x, bfv.params.slots // p.bits))
        bucket_ids: tuple[int, ...] = ()
        if self.bucketed:
            lsh = LshParams(p.bits, p.lsh_positions)
            bucket_ids = tuple(int(b) for b in lsh.bucket_ids(x[None, :].astype(np.uint8))[0])
        cpu = elapsed_ms(t0)
        keys_sent = not self._sent
        msg = QueryMessage(
            p.param_set, p.algo_id, self.mode, self._digest, b"" if self._sent else self._keys_bytes,
            ct, bucket_ids,
        )
        try:
            rep = transport.post("query", msg.to_bytes())
        except BlindmatchError as e:
            if getattr(e, "code", "") != UnknownKeysError.code or not self._sent:
                raise
            keys_sent = True
            rep = transport.post("query", QueryMessage(
                p.param_set, p.algo_id, self.mode, self._digest, self._keys_bytes, ct, bucket_ids,
            ).to_bytes())
        self._sent = True
        t1 = time.perf_counter()
        res = ResultMessage.from_bytes(rep.body, bfv.params.poly_degree, p.groups)
        if res.mode != self.mode or res.primes != bfv.params.output_primes:
            raise DecodeError("result does not answer this query")
        if res.used_slots > p.psi_slots:
            raise PsiSlotsError(f"reply claims {res.used_slots} PSI slots; parameters allow {p.psi_slots}")
        cts = res.ciphertexts(bfv.params.poly_degree)
        slots: list[npt.NDArray[np.int64]] = []
        for g in range(res.groups):
            vals, budget = keys.decrypt(bfv.import_raw(cts[g], bfv.output_parms_id))
            if budget <= 0:
                raise NoiseBudgetError("a result ciphertext is past its noise budget")
            slots.append(vals)
        all_slots = np.concatenate(slots)
        cpu += elapsed_ms(t1)
        extra: dict[str, Any] = {
            "mode": "client-learns" if self.mode == MODE_CLIENT else "server-learns",
            "groups": res.groups, "keys_sent": keys_sent, "bucketed": self.bucketed,
            "keygen_ms": self.keygen_ms,
        }
        matched: bool | None
        if self.mode == MODE_CLIENT:
            zeros = int(np.count_nonzero(all_slots == 0))
            matched = zeros > 0
            extra["zero_slots"] = zeros
        else:
            t2 = time.perf_counter()
            psi = self._psi_message(res, all_slots)
            cpu += elapsed_ms(t2)
            PsiAck.from_bytes(transport.post("psi", psi.to_bytes()).body)
            matched = None
            extra["psi_slots"] = res.used_slots
        return ScanResult(
            matched=matched,
            distance=None,
            bytes_up=transport.bytes_up - up0,
            bytes_down=transport.bytes_down - down0,
            crypto_ms=cpu,
            extra=extra,
        )

    @staticmethod
    def _psi_message(res: ResultMessage, slots: npt.NDArray[np.int64]) -> PsiMessage:
        """H(sid,j,v_j)^a and (H(sid,j,m_j)^b)^a for the used slots, each list shuffled."""
        a = ristretto.random_scalar()
        n = res.used_slots
        eb = ELEMENT_BYTES
        blinded = [
            ristretto.scalar_mult(a, ristretto.hash_to_group(psi_message(res.sid, j, int(slots[j])), PSI_DST))
            for j in range(n)
        ]
        doubled = [
            ristretto.scalar_mult(a, ristretto.decode_element(res.elements[j * eb : (j + 1) * eb]))
            for j in range(n)
        ]
        pa, pc = secure_permutation(n), secure_permutation(n)
        return PsiMessage(
            res.sid, b"".join(blinded[i] for i in pa), b"".join(doubled[i] for i in pc)
        )


# ====================================================================== registry


class HE(Protocol):
    name = "he"
    protocol_id = PROTOCOL_ID
    learner = Learner.CLIENT_OR_SERVER
    matching = Matching.FUZZY
    supported_algos = ("pdq", "phash", "dhash", "sha256")
    server_options_type = HEServerOptions
    client_options_type = HEClientOptions
    server_half_type = HEServer
    client_half_type = HEClient
    leakage = Leakage(
        client=(
            "client-learns: the number of set entries within distance r of its hash (0 = no match); "
            "a client sending non-binary bits gets uniform noise (binarity check, fails w.p. 1/t)",
            "the number of result ciphertexts, ⌈set size / 16384⌉ (⌈candidates / 16384⌉ if bucketed)",
            "server-learns: nothing about the verdict; the PSI slot cap (set size rounded up to "
            "psi_pad, announced in the parameters)",
        ),
        server=(
            "client-learns: nothing about the hash or the verdict (BFV IND-CPA), even if malicious; "
            "which evaluation keys (a per-client pseudonym) and when",
            "server-learns (opt-in): the number of set entries within distance r (the verdict), "
            "nothing more if semi-honest; a malicious server reads up to one bit of the hash per "
            "PSI slot per query (the slot cap U = set size rounded up to 256), plus one",
            "bucketed queries: the client's bits at the LSH-sampled positions (k·L bits, e.g. 48 of 256)",
        ),
        network=("with TLS: sizes (query ~0.8 MB, ~19 MB on first use with keys; ~0.5 MB per "
                 "result group) and timing",),
        server_sees_hash=False,
        client_sees_set=False,
    )

    def cost_floor(
        self, set_size: int, algo: HashAlgo,
        server_options: OptionsIn = None, client_options: OptionsIn = None,
    ) -> CostFloor:
        """The densest packing: ⌈n·bits ÷ slots⌉ pt×ct multiplies (NTT form) per query,
        one encryption and one decryption on the client, and a seeded query
        ciphertext up plus a result at the output primes down."""
        o = HEServerOptions.from_options(server_options)
        ps = get_param_set(o.param_set or _default_param_set(algo))
        tag = f"seal.{ps.name}"
        mults = math.ceil(set_size * algo.bits / ps.slots)
        note = ""
        if set_size < ps.slots:
            note = (
                f"; below one ciphertext of slots, one-distance-per-slot packing needs "
                f"⌈n/N⌉×{algo.bits} = {math.ceil(set_size / ps.slots) * algo.bits}"
            )
        n_poly, data, outp = ps.poly_degree, ps.data_primes, ps.output_primes
        up, down = data * n_poly * 8, 2 * outp * n_poly * 8
        return CostFloor(
            server_cpu_s=Floor(
                (Term(mults, f"{tag}.ptxct_ntt"),),
                f"⌈n × {algo.bits} bits ÷ {ps.slots} slots⌉ = {mults} pt×ct (NTT form) multiplies{note}",
            ),
            client_cpu_s=Floor(
                (Term(1, f"{tag}.encrypt"), Term(1, f"{tag}.decrypt")), "1 encrypt + 1 decrypt"
            ),
            bytes_per_query=Floor.constant(
                float(up + down),
                f"seeded query ciphertext ({data} primes × N × 8 B) + result at {outp} primes "
                f"(2 × {outp} × N × 8 B)",
            ),
            params={"param_set": ps.name, "poly_degree": n_poly, "useful_slots": ps.slots},
            primitive_params={
                "seal": {
                    "name": ps.name,
                    "poly_degree": n_poly,
                    "coeff_bits": list(ps.coeff_bits),
                    "plain_modulus": ps.plain_modulus,
                }
            },
        )

    def download_bytes(self, set_size: int, algo: HashAlgo) -> int:
        """The params message (a few hundred bytes); results are per-query, not one-time."""
        ps = get_param_set(_default_param_set(algo))
        k, tables = _default_lsh(algo)
        msg = ParamsMessage(
            ps.set_id, ALGO_IDS[algo.name], algo.default_threshold, algo.bits,
            default_baby_step(algo.bits), 3, True, ps.poly_degree, ps.plain_modulus,
            tuple([0] * len(ps.coeff_bits)), max(1, math.ceil(set_size / ps.slots)),
            tuple(tuple(range(k)) for _ in range(tables)), 1,
        )
        return len(msg.to_bytes())


HE_PROTOCOL = register(HE())


def _npy_matches(path: Path, digest: str) -> bool:
    """True when the cached worker copy of the set still holds exactly the verified hashes."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return False
    return arr.dtype == np.uint8 and hashlib.sha256(arr.tobytes()).hexdigest() == digest
