"""The tPSI client half: verify the manifest, cache the table, upload vouchers.

The client never learns whether an image matched (``ScanResult.matched`` is
always None): the server's reply is an acknowledgement of stored ids only.

Per-account secrets live in ``cache_dir/tpsi/origins/<origin>/accounts/``,
mode 0600: ``<sha256(account)>.key``, one 32-byte seed from which the Shamir
polynomial, the detection polynomials and the PRF keys are derived (so
successive scans of one account share one polynomial), and
``<sha256(account)>.id``, the Ed25519 key that signs the account's uploads
(the server binds the account to it). Both are per origin, not per server key,
so a signed key rotation keeps the account's polynomial and identity. Without
a ``cache_dir`` they live in memory for the client object's lifetime only.

Trust (``_check_manifest``): the manifest is Ed25519-signed. The first key
seen at an origin is remembered (``trust.json``, with the highest epoch seen);
a different key is accepted only with a rotation record signed by the
remembered key, and an older epoch is refused as a rollback. Pins override
first use (``TpsiClientOptions``): ``pinned_signing_key`` (hex key),
``pinned_set_digest`` (hex root digest of the set), ``pinned_manifest_digest``
(hex ``Manifest.digest()`` of the whole manifest).
Policy floors refuse a validly signed but weakened manifest: ``min_threshold``
(default 10) and ``min_synthetic_rate`` (default 0.01).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..base import ClientHalf, Query, ScanResult, Transport, elapsed_ms
from ..errors import (
    BadHashError,
    BlindmatchError,
    DigestMismatchError,
    InputError,
    PolicyError,
    RollbackError,
    SignatureError,
    StorageUnavailableError,
)
from ..files import atomic_write
from ..hashes import ALGO_IDS, HashAlgo, HashValue
from ..keyfile import read_secret, write_secret
from ..multiprobe import probe_hashes
from ._core import AccountSecrets, cuckoo_item, make_voucher
from ._options import TpsiClientOptions
from ._wire import Manifest, TableMsg, UploadBatch, UploadReply, Voucher, account_bytes

__all__ = ["TpsiClient"]


def _sha256(data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes

    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    return h.finalize()


class TpsiClient(ClientHalf):
    def __init__(self, algo: HashAlgo, cache_dir: Path | None, options: TpsiClientOptions) -> None:
        self.algo = algo
        self.algo_id = ALGO_IDS[algo.name]
        self.cache = Path(cache_dir) / "tpsi" if cache_dir is not None else None
        self.probe_bits = options.probe_bits
        self.pinned_key = _hex(options.pinned_signing_key)
        self.pinned_set = _hex(options.pinned_set_digest)
        self.pinned_manifest = _hex(options.pinned_manifest_digest)
        self.min_threshold = options.min_threshold
        self.min_synthetic_ppm = round(1_000_000 * options.min_synthetic_rate)
        self.max_batch = options.max_batch
        self.manifest: Manifest | None = None
        self.table: TableMsg | None = None
        self.origin = "unset"
        self._accounts: dict[str, tuple[AccountSecrets, Ed25519PrivateKey]] = {}
        self._trust: dict[str, dict[str, Any]] = {}  # origin -> trust record, without a cache

    # --- trust --------------------------------------------------------------
    def _origin_dir(self) -> Path | None:
        return self.cache / "origins" / self.origin if self.cache is not None else None

    def _check_policy(self, m: Manifest) -> None:
        """Pins and floors: refuse a manifest that is validly signed but not what we accept."""
        if self.pinned_set is not None and m.set_digest != self.pinned_set:
            raise SignatureError("manifest commits to a different hash set than the pinned digest")
        if self.pinned_manifest is not None and m.digest() != self.pinned_manifest:
            raise SignatureError("manifest differs from the pinned manifest digest")
        if m.threshold < self.min_threshold:
            raise PolicyError(
                f"server threshold {m.threshold} is below this client's floor {self.min_threshold}"
            )
        if m.synthetic_ppm < self.min_synthetic_ppm:
            raise PolicyError(
                f"server synthetic rate {m.synthetic_ppm} ppm is below this client's floor "
                f"{self.min_synthetic_ppm} ppm"
            )
        if m.algo_id != self.algo_id:
            raise BadHashError(f"server's tpsi table is not for {self.algo.name} hashes")

    def _check_trust(self, m: Manifest) -> None:
        """First use per origin, signed rotation only, no epoch rollback; persisted in the cache."""
        odir = self._origin_dir()
        path = odir / "trust.json" if odir is not None else None
        rec = self._trust.get(self.origin)
        if rec is None and path is not None and path.exists():
            try:
                rec = json.loads(path.read_text())
                bytes.fromhex(rec["key"]), int(rec["epoch"])
            except (ValueError, KeyError, TypeError):
                raise SignatureError(f"{path}: unreadable trust record; remove it to re-trust") from None
        if rec is not None:
            known = bytes.fromhex(rec["key"])
            if self.pinned_key is None and known != m.public_key and not m.rotated_from(known):
                raise SignatureError(
                    "manifest signing key changed since first use without a rotation signed "
                    "by the previous key"
                )
            if known == m.public_key and m.epoch < int(rec["epoch"]):
                raise RollbackError(
                    f"manifest epoch {m.epoch} is older than epoch {rec['epoch']} already seen"
                )
            if known == m.public_key and m.epoch == int(rec["epoch"]):
                return
        rec = {"key": m.public_key.hex(), "epoch": m.epoch}
        self._trust[self.origin] = rec
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write(path, json.dumps(rec).encode())

    # --- set-up -----------------------------------------------------------
    def setup(self, transport: Transport) -> float:
        """Fetch and verify the manifest, then the table (cached by digest); returns CPU ms."""
        if self.manifest is not None:
            return 0.0
        self.origin = _origin(transport)
        rep = transport.get("manifest")
        t0 = time.perf_counter()
        m = Manifest.from_bytes(rep.body)
        m.verify(self.pinned_key)
        self._check_policy(m)
        self._check_trust(m)
        cpu = elapsed_ms(t0)
        self.manifest = m
        cached = self.cache / "tables" / f"table-{m.table_digest.hex()}.bin" if self.cache else None
        body: bytes | None = None
        if cached is not None and cached.is_file():
            data = cached.read_bytes()
            if _sha256(data) == m.table_digest:
                body = data
        if body is None:
            rep = transport.get("table")
            t1 = time.perf_counter()
            if _sha256(rep.body) != m.table_digest:
                self.manifest = None
                raise DigestMismatchError("table does not match the signed manifest digest")
            body = rep.body
            cpu += elapsed_ms(t1)
            if cached is not None:
                atomic_write(cached, body)
        t2 = time.perf_counter()
        table = TableMsg.from_bytes(body)
        if table.epoch != m.epoch or table.n_slots != m.n_slots:
            self.manifest = None
            raise DigestMismatchError("table epoch or size disagrees with the manifest")
        self.table = table
        return cpu + elapsed_ms(t2)

    def _account(self, account: str) -> tuple[AccountSecrets, Ed25519PrivateKey]:
        if self.manifest is None:
            raise InputError("call setup() before using account secrets")
        m = self.manifest
        acc_key = f"{self.origin}|{m.threshold}|{m.dhf_dim}|{account}"
        got = self._accounts.get(acc_key)
        if got is not None:
            return got
        odir = self._origin_dir()
        if odir is None:
            seed, ident = secrets.token_bytes(32), secrets.token_bytes(32)
        else:
            stem = odir / "accounts" / hashlib.sha256(account.encode()).hexdigest()
            seed = _load_or_create_seed(stem.with_suffix(".key"))
            ident = _load_or_create_seed(stem.with_suffix(".id"))
        got = (
            AccountSecrets.derive(seed, m.threshold, m.dhf_dim),
            Ed25519PrivateKey.from_private_bytes(ident),
        )
        self._accounts[acc_key] = got
        return got

    def account_secrets(self, account: str) -> AccountSecrets:
        """Load (or create once) the account's seed and derive its polynomials."""
        return self._account(account)[0]

    def client_key(self, account: str) -> bytes:
        """The public key this client signs ``account``'s uploads with (for operator enrolment)."""
        return self._account(account)[1].public_key().public_bytes_raw()

    def is_synthetic(self, account: str, h: HashValue) -> bool:
        """Would this account's voucher for ``h`` be synthetic? (tests and simulator only)."""
        assert self.manifest is not None
        return self.account_secrets(account).is_synthetic(
            cuckoo_item(self.algo_id, h.raw), self.manifest.synthetic_ppm
        )

    # --- vouchers -----------------------------------------------------------
    def vouchers_for(self, q: Query) -> list[Voucher]:
        """One voucher per probe of ``q`` (setup() must have run)."""
        if self.manifest is None or self.table is None:
            raise InputError("call setup() first")
        if q.account is None:
            raise InputError("tpsi needs Query.account (the account the vouchers count towards)")
        if q.hash.algo != self.algo:
            raise BadHashError(f"client is for {self.algo.name}, query is {q.hash.algo.name}")
        acc = account_bytes(q.account)
        acct = self.account_secrets(q.account)
        probes = probe_hashes(q.hash, q.float_values, self.probe_bits)
        # one synthetic coin per image: a synthetic image opens exactly one of its probes
        chosen = acct.synthetic_probe(
            cuckoo_item(self.algo_id, q.hash.raw), self.manifest.synthetic_ppm, len(probes)
        )
        out = []
        for j, (h, _) in enumerate(probes):
            v, _ = make_voucher(
                self.manifest,
                self.table,
                acct,
                acc,
                cuckoo_item(self.algo_id, h.raw),
                q.associated_data,
                synthetic=chosen is not None,
                opens=chosen == j,
            )
            out.append(v)
        return out

    def scan(self, query: Query, transport: Transport) -> ScanResult:
        return self.scan_many([query], transport)[0]

    def scan_many(self, queries: Sequence[Query], transport: Transport) -> list[ScanResult]:
        """Build every query's vouchers, upload them per account in batches, attribute bytes.

        If the server moved to a new epoch since our manifest was fetched, the
        vouchers are refused with ``unknown_epoch``; we refetch and retry once.
        """
        try:
            return self._scan_many(queries, transport)
        except BlindmatchError as e:
            if e.code != "unknown_epoch":
                raise
        self.manifest, self.table = None, None
        return self._scan_many(queries, transport)

    def _scan_many(self, queries: Sequence[Query], transport: Transport) -> list[ScanResult]:
        up0, down0 = transport.bytes_up, transport.bytes_down
        setup_cpu = self.setup(transport)
        setup_down = transport.bytes_down - down0
        setup_up = transport.bytes_up - up0
        built: list[tuple[list[Voucher], float]] = []
        for q in queries:
            t0 = time.perf_counter()
            vs = self.vouchers_for(q)
            built.append((vs, elapsed_ms(t0)))
        results = [
            ScanResult(
                matched=None,
                crypto_ms=cpu,
                extra={
                    "vouchers": len(vs),
                    "voucher_ids": [v.vid.hex() for v in vs],
                    "epoch": vs[0].epoch,
                },
            )
            for vs, cpu in built
        ]
        if results:
            results[0].crypto_ms += setup_cpu
            results[0].bytes_down += setup_down
            results[0].bytes_up += setup_up
            results[0].extra["setup_bytes"] = setup_down
        # group by account, keep order; split into batches of <= max_batch vouchers
        pending: list[tuple[int, bytes, bytes]] = []  # (query index, voucher id, bytes)
        account: str | None = None

        def flush() -> None:
            if not pending:
                return
            assert account is not None
            batch = UploadBatch(account, tuple(v for _, _, v in pending))
            body = batch.signed(self._account(account)[1]).to_bytes()
            u0, d0 = transport.bytes_up, transport.bytes_down
            rep = transport.post("vouchers", body)
            reply = UploadReply.from_bytes(rep.body)
            acked = set(reply.acked)
            if any(vid not in acked for _, vid, _ in pending):
                raise StorageUnavailableError("server did not acknowledge every voucher")
            up, down = transport.bytes_up - u0, transport.bytes_down - d0
            total = sum(len(v) + 4 for _, _, v in pending)
            for idx, _, v in pending:  # attribute batch bytes by voucher size
                share = (len(v) + 4) / total
                results[idx].bytes_up += round(up * share)
                results[idx].bytes_down += round(down * share)
            pending.clear()

        for idx, (q, (vs, _)) in enumerate(zip(queries, built, strict=True)):
            if q.account != account:
                flush()
                account = q.account
            for v in vs:
                if len(pending) >= self.max_batch:
                    flush()
                pending.append((idx, v.vid, v.to_bytes()))
        flush()
        return results


def _hex(value: str | None) -> bytes | None:
    """A pin given as hex (checked by ``TpsiClientOptions``), or None."""
    return bytes.fromhex(value) if value else None


def _origin(transport: Transport) -> str:
    """Trust is per origin: the server's base URL (or the in-process transport's type)."""
    origin = getattr(transport, "base_url", None) or type(transport).__name__
    return hashlib.sha256(str(origin).encode()).hexdigest()[:16]


def _load_or_create_seed(path: Path) -> bytes:
    """Create the seed exactly once even with concurrent clients (link is atomic)."""
    if path.exists():
        return read_secret(path, 32)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
    write_secret(tmp, secrets.token_bytes(32))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return read_secret(path, 32)
