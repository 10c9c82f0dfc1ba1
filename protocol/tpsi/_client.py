"""The tPSI client half: verify the manifest, cache the table, upload vouchers.

The client never learns whether an image matched (``ScanResult.matched`` is
always None): the server's reply is an acknowledgement of stored ids only.

Per-account secrets (one 32-byte seed from which the Shamir polynomial, the
detection polynomials and the PRF keys are derived) live in
``cache_dir/tpsi/<server key fingerprint>/accounts/<sha256(account)>.key``,
mode 0600, so successive scans of one account share one polynomial. Without a
``cache_dir`` they live in memory for the client object's lifetime only —
shares from a later process would then never combine with earlier ones.

Trust: the manifest is Ed25519-signed. Pass ``pinned_signing_key`` (hex) to
pin the server key, and ``pinned_set_digest`` to pin the published root digest
of the hash set (``TpsiClientOptions``); without pins the signature only
protects against corruption, not against a server that equivocates.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

from ..base import ClientHalf, Query, ScanResult, Transport, elapsed_ms
from ..errors import (
    BadHashError,
    BlindmatchError,
    DigestMismatchError,
    InputError,
    SignatureError,
    StorageUnavailableError,
)
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
        key, digest = options.pinned_signing_key, options.pinned_set_digest
        self.pinned_key = bytes.fromhex(key) if key else None
        self.pinned_set = bytes.fromhex(digest) if digest else None
        self.max_batch = options.max_batch
        self.manifest: Manifest | None = None
        self.table: TableMsg | None = None
        self._accounts: dict[str, AccountSecrets] = {}

    # --- set-up -----------------------------------------------------------
    def _server_dir(self) -> Path | None:
        if self.cache is None or self.manifest is None:
            return None
        return self.cache / self.manifest.public_key.hex()[:32]

    def setup(self, transport: Transport) -> float:
        """Fetch and verify the manifest, then the table (cached by digest); returns CPU ms."""
        if self.manifest is not None:
            return 0.0
        rep = transport.get("manifest")
        t0 = time.perf_counter()
        m = Manifest.from_bytes(rep.body)
        m.verify(self.pinned_key)
        if self.pinned_set is not None and m.set_digest != self.pinned_set:
            raise SignatureError("manifest commits to a different hash set than the pinned digest")
        if m.algo_id != self.algo_id:
            raise BadHashError(f"server's tpsi table is not for {self.algo.name} hashes")
        cpu = elapsed_ms(t0)
        self.manifest = m
        sdir = self._server_dir()
        cached = sdir / f"table-{m.table_digest.hex()}.bin" if sdir else None
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
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_name(cached.name + f".{os.getpid()}.tmp")
                tmp.write_bytes(body)
                os.replace(tmp, cached)
        t2 = time.perf_counter()
        table = TableMsg.from_bytes(body)
        if table.epoch != m.epoch or table.n_slots != m.n_slots:
            self.manifest = None
            raise DigestMismatchError("table epoch or size disagrees with the manifest")
        self.table = table
        return cpu + elapsed_ms(t2)

    def account_secrets(self, account: str) -> AccountSecrets:
        """Load (or create once) the account's seed and derive its polynomials."""
        if self.manifest is None:
            raise InputError("call setup() before using account secrets")
        acc_key = f"{self.manifest.public_key.hex()}|{account}"
        got = self._accounts.get(acc_key)
        if got is not None:
            return got
        sdir = self._server_dir()
        if sdir is None:
            seed = secrets.token_bytes(32)
        else:
            path = sdir / "accounts" / (hashlib.sha256(account.encode()).hexdigest() + ".key")
            seed = _load_or_create_seed(path)
        acct = AccountSecrets.derive(seed, self.manifest.threshold, self.manifest.dhf_dim)
        self._accounts[acc_key] = acct
        return acct

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
        out = []
        for h, _ in probe_hashes(q.hash, q.float_values, self.probe_bits):
            v, _ = make_voucher(
                self.manifest,
                self.table,
                acct,
                acc,
                cuckoo_item(self.algo_id, h.raw),
                q.associated_data,
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
            body = UploadBatch(account, tuple(v for _, _, v in pending)).to_bytes()
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
