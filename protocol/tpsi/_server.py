"""The tPSI server half: signed manifest, table download, voucher intake, reveals.

Order of work for ``POST vouchers`` (why): parse and validate the whole batch
first (a malformed voucher or a wrong epoch rejects the batch with a typed 400
and stores nothing); then try the outer layer of every voucher (CPU, outside
any lock); then commit the batch in one SQLite transaction; only then
acknowledge. The reply lists the stored ids and never depends on whether
anything opened, so the uploader learns nothing about matches from it.

Reveals run after the commit, by default on a background thread so that the
threshold work does not show up in the upload's latency (a timing channel
that would tell the client its account crossed t). ``reveal_mode="inline"``
runs them in the request (for tests), ``"manual"`` only on demand (admin POST
or ``process_reveals``).

Uploads are authenticated: every batch is signed by a client key, and an
account accepts batches only under the key it is bound to — the first key
that uploads to it (``enrollment="first-use"``) or the key an operator
enrolled (``"admin"``, ``POST accounts``). Reveals never trust an earlier
result: detection runs over every opened voucher each time, each group of
rows on one polynomial is reconstructed on its own, and an account showing
more than one polynomial is flagged in the audit table.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..base import Endpoint, Reply, Request, ServerHalf, ServerVerdict
from ..errors import (
    BlindmatchError,
    CorruptStoreError,
    DecodeError,
    InputError,
    LengthError,
    UnknownEpochError,
)
from ..files import atomic_write
from ..hashes import ALGO_IDS, HashSet
from ..hazmat import dhf, shamir
from ..hazmat.ristretto import base_mult, random_scalar
from ..keyfile import read_secret, write_secret
from ._core import Opened, cuckoo_item, open_outer, parse_inner, reveal_ad
from ._options import TpsiServerOptions
from ._store import DB_NAME, Reveal, TpsiStore, key_id
from ._table import build_table
from ._wire import (
    Manifest,
    TableMsg,
    UploadBatch,
    UploadReply,
    account_bytes,
    rotation_message,
)

__all__ = ["ServerParams", "TpsiServer", "TpsiServerOptions", "rotate_signing_key"]

log = logging.getLogger("blindmatch.tpsi")

ACCOUNT_HEADER = "x-blindmatch-account"


def sha256(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    return h.finalize()


ServerParams = TpsiServerOptions  # the name earlier releases exported


class TpsiServer(ServerHalf):
    """Owns α, the signing key, the table and the SQLite store under ``state_dir``."""

    def __init__(self, hashes: HashSet, state_dir: Path, params: TpsiServerOptions) -> None:
        self.params = params
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.algo_id = ALGO_IDS[hashes.algo.name]
        self.store = TpsiStore(self.state_dir / DB_NAME, params.max_pages)
        # Several uvicorn workers may open one state dir at once: serialise key
        # creation and table builds so they all end up serving the same epoch.
        with _exclusive(self.state_dir / ".setup.lock"):
            self._signing = self._load_signing_key()
            pub = self._signing.public_key()
            self.public_key = pub.public_bytes(Encoding.Raw, PublicFormat.Raw)
            self.manifest, self.table_bytes, self._alpha = self._load_or_build(hashes)
        self.manifest_bytes = self.manifest.to_bytes()
        self._etag_manifest = '"' + sha256(self.manifest_bytes).hex() + '"'
        self._etag_table = '"' + self.manifest.table_digest.hex() + '"'
        self._locks = [threading.Lock() for _ in range(64)]  # striped per-account locks
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        if params.reveal_mode == "background":
            self._worker = threading.Thread(
                target=self._run_worker, name="tpsi-reveals", daemon=True
            )
            self._worker.start()
            for acc in self.store.pending_accounts():  # work left over from before a restart
                self._queue.put(acc)

    # --- set-up -----------------------------------------------------------
    def _load_signing_key(self) -> Ed25519PrivateKey:
        path = self.state_dir / "signing.key"
        if not path.exists():
            write_secret(path, Ed25519PrivateKey.generate().private_bytes_raw())
        return Ed25519PrivateKey.from_private_bytes(read_secret(path, 32))

    def _rotation_record(self) -> tuple[bytes, bytes]:
        """The old key's hand-over to ours, carried by every manifest we sign (if we rotated)."""
        path = self.state_dir / "rotation.bin"
        if not path.exists():
            return b"", b""
        rec = path.read_bytes()
        if len(rec) != 96:
            raise CorruptStoreError(f"{path}: rotation record must be 96 bytes")
        prev, sig = rec[:32], rec[32:]
        try:
            Ed25519PublicKey.from_public_bytes(prev).verify(sig, rotation_message(self.public_key))
        except (InvalidSignature, ValueError):
            raise CorruptStoreError(f"{path}: rotation record does not hand over to our key") from None
        return prev, sig

    def _wanted(self, hashes: HashSet) -> dict[str, Any]:
        return {
            "algo_id": self.algo_id,
            "set_size": len(hashes),
            "set_digest": sha256(hashes.raw()),
            "threshold": self.params.threshold,
            "synthetic_ppm": self.params.synthetic_ppm,
            "dhf_dim": self.params.dhf_dim,
            "ad_max": self.params.ad_max,
            "n_hash": self.params.n_hash,
        }

    def _load_or_build(self, hashes: HashSet) -> tuple[Manifest, bytes, bytes]:
        mpath = self.state_dir / "manifest.bin"
        want = self._wanted(hashes)
        old_epoch = 0
        if mpath.exists():
            try:
                m = Manifest.from_bytes(mpath.read_bytes())
                m.verify(self.public_key)
            except BlindmatchError:
                raise CorruptStoreError(
                    f"{mpath}: manifest unreadable or not signed by our key"
                ) from None
            old_epoch = m.epoch
            if all(getattr(m, k) == v for k, v in want.items()):
                tpath = self.state_dir / f"table-{m.epoch}.bin"
                apath = self.state_dir / f"alpha-{m.epoch}.key"
                try:
                    table = tpath.read_bytes()
                except FileNotFoundError:
                    raise CorruptStoreError(f"{tpath}: table file missing") from None
                if sha256(table) != m.table_digest:
                    raise CorruptStoreError(f"{tpath}: table does not match the signed digest")
                alpha = read_secret(apath, 32)
                if base_mult(alpha) != m.big_l:
                    raise CorruptStoreError(f"{apath}: key does not match the manifest's L")
                return m, table, alpha
        epoch = max(old_epoch, self.store.max_epoch()) + 1
        return self._build(hashes, epoch, want)

    def _build(
        self, hashes: HashSet, epoch: int, want: dict[str, Any]
    ) -> tuple[Manifest, bytes, bytes]:
        p = self.params
        items = [cuckoo_item(self.algo_id, v) for v in _raw_values(hashes)]
        alpha = random_scalar()
        built = build_table(items, alpha, p.n_hash, p.eps, p.workers)
        table = TableMsg(epoch, built.slots).to_bytes()
        digest = sha256(table)
        log.info(
            "tpsi epoch %d: %d hashes in %d slots (cuckoo %.2fs, %d attempt(s); points %.2fs)",
            epoch,
            len(items),
            built.n_slots,
            built.seconds_cuckoo,
            built.attempts,
            built.seconds_points,
        )
        prev_key, rotation_sig = self._rotation_record()
        m = Manifest(
            epoch=epoch,
            n_slots=built.n_slots,
            cuckoo_seed=built.seed,
            table_digest=digest,
            big_l=base_mult(alpha),
            created=int(time.time()),
            public_key=self.public_key,
            prev_key=prev_key,
            rotation_sig=rotation_sig,
            **want,
        ).signed(self._signing)
        write_secret(self.state_dir / f"alpha-{epoch}.key", alpha)
        atomic_write(self.state_dir / f"table-{epoch}.bin", table)
        self.store.add_epoch(epoch, p.threshold, p.dhf_dim, p.ad_max, digest)
        atomic_write(self.state_dir / "manifest.bin", m.to_bytes())  # the switch-over point
        for old in self.state_dir.glob("*-*.*"):
            if old.name.startswith(("alpha-", "table-")) and old.stem.split("-")[-1] != str(epoch):
                old.unlink(missing_ok=True)
        return m, table, alpha

    # --- endpoints --------------------------------------------------------
    def endpoints(self) -> Sequence[Endpoint]:
        vb = self.manifest.voucher_bytes
        return [
            Endpoint("GET", "manifest", self._get_manifest, summary="Signed tPSI manifest"),
            Endpoint(
                "GET", "table", self._get_table, summary="Blinded cuckoo table (binary, ETag)"
            ),
            Endpoint(
                "POST",
                "vouchers",
                self._post_vouchers,
                max_body=64 + self.params.max_batch * (vb + 8) + 256,
                rate_limited=True,
                cost=UploadBatch.count,
                summary="Upload a batch of vouchers (acknowledged after commit)",
            ),
            Endpoint(
                "GET",
                "reveals",
                self._get_reveals,
                admin=True,
                summary="Revealed AD of an account (header X-Blindmatch-Account)",
            ),
            Endpoint(
                "POST",
                "reveals",
                self._post_reveals,
                admin=True,
                max_body=256,
                summary="Run reveal processing for an account (body: account id) and list",
            ),
            Endpoint(
                "POST",
                "accounts",
                self._post_accounts,
                admin=True,
                max_body=512,
                summary="Enrol an account's client key (JSON: account, client_key hex)",
            ),
        ]

    def setup_bytes(self) -> int:
        return len(self.manifest_bytes) + len(self.table_bytes)

    @staticmethod
    def _cached(
        req: Request, etag: str, body: bytes, media: str = "application/octet-stream"
    ) -> Reply:
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        inm = req.headers.get("if-none-match", "")
        if etag in {t.strip() for t in inm.split(",")}:
            return Reply(b"", status=304, headers=headers, media_type=media)
        return Reply(body, headers=headers, media_type=media)

    def _get_manifest(self, req: Request) -> Reply:
        return self._cached(req, self._etag_manifest, self.manifest_bytes)

    def _get_table(self, req: Request) -> Reply:
        return self._cached(req, self._etag_table, self.table_bytes)

    def _post_vouchers(self, req: Request) -> Reply:
        batch = UploadBatch.from_bytes(req.body, self.params.max_batch)
        account, vouchers = batch.account, batch.parsed()
        acc = account_bytes(account)
        m = self.manifest
        for v in vouchers:
            if v.epoch != m.epoch:
                raise UnknownEpochError(f"voucher for epoch {v.epoch}; this server is at {m.epoch}")
            if len(v.pairs) != m.n_hash or len(v.rct) != m.rct_bytes:
                raise LengthError("voucher does not match the manifest's sizes")
        rows = []
        for v in vouchers:
            status, inner = open_outer(self._alpha, m, v, acc)
            rows.append(
                (v.vid, v.epoch, sha256(v.to_bytes()), status, inner if status == 1 else None)
            )
        new, dup = self.store.insert_batch(
            account, rows, batch.client_key, self.params.enrollment == "first-use"
        )
        self._after_upload(account)
        acked = tuple(dict.fromkeys(v.vid for v in vouchers))
        return Reply(UploadReply(new, dup, acked).to_bytes())

    def _account_from(self, req: Request, from_body: bool) -> str:
        if from_body:
            try:
                account = req.body.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise DecodeError("account id is not UTF-8") from None
        else:
            account = req.headers.get(ACCOUNT_HEADER, "")
        if not account:
            raise InputError(f"account id required ({ACCOUNT_HEADER} header or body)")
        account_bytes(account)
        return account

    def _reveals_reply(self, account: str, via: str) -> Reply:
        out = self.reveals(account)
        self.store.audit(account, "admin_list", {"via": via, "listed": len(out)})
        body = {
            "account": account,
            "threshold": self.manifest.threshold,
            "reveals": [r.as_json() for r in out],
        }
        return Reply(json.dumps(body).encode(), media_type="application/json")

    def _post_accounts(self, req: Request) -> Reply:
        try:
            body = json.loads(req.body)
            account, key = str(body["account"]), bytes.fromhex(str(body["client_key"]))
        except (ValueError, KeyError, TypeError):
            raise DecodeError('body must be {"account": ..., "client_key": "<64 hex>"}') from None
        self.enroll(account, key)
        body = {"account": account, "key_id": key_id(key)}
        return Reply(json.dumps(body).encode(), media_type="application/json")

    def enroll(self, account: str, client_key: bytes) -> None:
        """Bind ``account`` to ``client_key`` (operator action; replaces an earlier binding)."""
        account_bytes(account)
        if len(client_key) != 32:
            raise LengthError("client key must be 32 bytes (Ed25519 public key)")
        self.store.enroll(account, client_key)

    def _get_reveals(self, req: Request) -> Reply:
        return self._reveals_reply(self._account_from(req, False), "GET")

    def _post_reveals(self, req: Request) -> Reply:
        account = self._account_from(req, True)
        self.process_reveals(account)
        return self._reveals_reply(account, "POST")

    # --- reveals ----------------------------------------------------------
    def reveals(self, account: str) -> list[Reveal]:
        return self.store.reveals(account)

    def settle(self, account: str) -> None:
        """Run the reveal work owed for ``account`` now (the operator's admin POST)."""
        self.process_reveals(account)

    def server_verdicts(self, account: str) -> list[ServerVerdict]:
        """Revealed vouchers only: below the threshold the server knows no verdict."""
        return [ServerVerdict(True, r.ad, float(r.revealed_at)) for r in self.reveals(account)]

    def _after_upload(self, account: str) -> None:
        mode = self.params.reveal_mode
        if mode == "inline":
            self.process_reveals(account)
        elif mode == "background":
            self._queue.put(account)

    def _run_worker(self) -> None:
        while True:
            account = self._queue.get()
            try:
                if account is None:
                    return
                try:
                    if self.store.pending(account):
                        self.process_reveals(account)
                except Exception as e:  # keep serving; the account stays pending
                    log.error("tpsi reveal processing failed for an account: %s", type(e).__name__)
            finally:
                self._queue.task_done()

    def wait_idle(self) -> None:
        """Block until the background worker has processed everything queued so far."""
        self._queue.join()

    def _lock_for(self, account: str) -> threading.Lock:
        return self._locks[int.from_bytes(sha256(account.encode())[:4], "big") % len(self._locks)]

    def process_reveals(self, account: str) -> int:
        """Reconstruct and reveal for an account holding >= t real shares; returns new reveals."""
        with self._lock_for(account):
            opened_n = self.store.opened_count(account)
            rows = self.store.opened(account)
            params = self.store.epoch_params()
            revealed = self.store.revealed_vids(account)
            acc = account_bytes(account)
            groups: dict[tuple[int, int, int], list[tuple[bytes, int, Opened]]] = defaultdict(list)
            for sv in rows:
                if sv.status != 1 or sv.epoch not in params:
                    continue
                t, k, ad_max = params[sv.epoch]
                o = parse_inner(sv.inner, k, ad_max)
                if o is not None:
                    groups[(t, k, ad_max)].append((sv.vid, sv.epoch, o))
            new = 0
            for (t, _k, _a), group in groups.items():
                new += self._reveal_group(account, acc, t, group, revealed)
            self.store.mark_attempted(account, opened_n)
            return new

    def _reveal_group(
        self,
        account: str,
        acc: bytes,
        t: int,
        group: list[tuple[bytes, int, Opened]],
        revealed: set[bytes],
    ) -> int:
        """Detect, per polynomial, the real shares among opened vouchers; reveal each set >= t.

        Nothing from an earlier reveal is trusted: a polynomial that reached t
        first (say one planted by whoever held the account's key) cannot hide
        a second one, whose vouchers are revealed too and the account flagged.
        """
        # One row per distinct x: a repeated hash gives an identical share (counted once);
        # differing contents under one x cannot come from an honest client -> junk.
        by_x: dict[int, list[tuple[bytes, int, Opened]]] = defaultdict(list)
        for item in group:
            by_x[item[2].x].append(item)
        distinct: list[list[tuple[bytes, int, Opened]]] = []
        for members in by_x.values():
            o0 = members[0][2]
            if all(o.y == o0.y and bool((o.det == o0.det).all()) for _, _, o in members):
                distinct.append(members)
        if len(distinct) < t:
            return 0
        pts = [dhf.detection_point(ms[0][2].x_bytes) for ms in distinct]
        dets = _stack([ms[0][2].det for ms in distinct])
        polys: list[tuple[list[int], list[list[tuple[bytes, int, Opened]]]]] = []
        for rows in dhf.kernel_groups(dhf.rows(pts, dets, t)):
            if len(rows) < t:
                continue
            cand = [distinct[i] for i in rows]
            coeffs = shamir.interpolate([(ms[0][2].x, ms[0][2].y) for ms in cand[:t]])
            if any(shamir.eval_poly(coeffs, ms[0][2].x) != ms[0][2].y for ms in cand):
                self.store.audit(account, "detection_inconclusive", {"opened": len(distinct)})
                continue
            polys.append((coeffs, cand))
        out: list[tuple[bytes, int, bytes]] = []
        events: list[tuple[str, dict[str, Any]]] = []
        for coeffs, cand in polys:
            fresh = [
                (vid, epoch, ad)
                for members in cand
                for vid, epoch, om in members
                if vid not in revealed
                and (ad := reveal_ad(coeffs[0], om, vid, acc)) is not None
            ]
            if fresh and len(fresh) == sum(len(ms) for ms in cand):
                detail = {"threshold": t, "opened": len(distinct), "real_shares": len(cand)}
                events.append(("threshold_reached", detail))
            out += fresh
        if len(polys) > 1:
            self._flag_inconsistent(account, [len(c) for _, c in polys])
        if not out and not events:
            return 0
        return self.store.record_reveals(account, out, events)

    def _flag_inconsistent(self, account: str, sizes: list[int]) -> None:
        """Audit an account whose uploads lie on several polynomials (once per new count)."""
        seen = {
            e["detail"].get("polynomials")
            for e in self.store.audit_log(account)
            if e["event"] == "inconsistent_polynomials"
        }
        if len(sizes) not in seen:
            detail = {"polynomials": len(sizes), "shares": sorted(sizes, reverse=True)}
            self.store.audit(account, "inconsistent_polynomials", detail)
            log.warning("tpsi account shows %d share polynomials; flagged for review", len(sizes))

    def close(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            self._queue.put(None)
            self._worker.join(timeout=30)
        self.store.close()


def rotate_signing_key(state_dir: Path | str) -> bytes:
    """Replace the manifest signing key; the old key signs the new one. Returns the new key.

    Clients that trusted the old key on first use accept the new one only
    through this record. The next server start signs a new epoch with the new
    key (running servers keep the old manifest until restarted).
    """
    d = Path(state_dir)
    with _exclusive(d / ".setup.lock"):
        old = Ed25519PrivateKey.from_private_bytes(read_secret(d / "signing.key", 32))
        new = Ed25519PrivateKey.generate()
        pub = new.public_key().public_bytes_raw()
        record = old.public_key().public_bytes_raw() + old.sign(rotation_message(pub))
        atomic_write(d / "rotation.bin", record)
        write_secret(d / "signing.key", new.private_bytes_raw())
        (d / "manifest.bin").unlink(missing_ok=True)
    return pub


def _stack(vectors: list[Any]) -> Any:
    import numpy as np

    return np.stack(vectors).astype(np.int64)


def _raw_values(hashes: HashSet) -> list[bytes]:
    blob = hashes.raw()
    n = hashes.algo.nbytes
    return [blob[i : i + n] for i in range(0, len(blob), n)]


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """An advisory lock held across processes (flock), released on exit or crash."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
