"""Durable tPSI server state in SQLite (WAL, synchronous=FULL).

Why SQLite this way: a voucher is acknowledged only after the transaction that
stores it has committed with ``synchronous=FULL``, so an acknowledged voucher
survives a crash or power cut; WAL lets the admin CLI read while the server
writes, and lets several uvicorn workers share one store. Every write is one
``BEGIN IMMEDIATE`` transaction: a failure rolls back and surfaces as
``StorageUnavailableError`` (503), leaving earlier data untouched.

What is stored: for every voucher its id, account, epoch, arrival time, digest
and whether its outer layer opened; for opened vouchers the inner layer
(share, detection vector, AD still encrypted under the account key). AD is
stored in plaintext only in ``reveals``, i.e. only for vouchers whose AD the
server could decrypt after reaching the threshold. The raw voucher is not kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import (
    AccountKeyMismatchError,
    AccountNotEnrolledError,
    CorruptStoreError,
    StorageUnavailableError,
)

__all__ = ["DB_NAME", "Reveal", "StoredVoucher", "TpsiStore", "key_id", "read_reveals"]

DB_NAME = "tpsi.sqlite3"
SCHEMA_VERSION = "2"  # 2: accounts.client_key (the key an account's uploads are signed with)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS epochs(
    epoch INTEGER PRIMARY KEY, threshold INTEGER NOT NULL, dhf_dim INTEGER NOT NULL,
    ad_max INTEGER NOT NULL, table_digest BLOB NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS vouchers(
    vid BLOB PRIMARY KEY, account TEXT NOT NULL, epoch INTEGER NOT NULL,
    received REAL NOT NULL, digest BLOB NOT NULL, status INTEGER NOT NULL, inner BLOB);
CREATE INDEX IF NOT EXISTS vouchers_by_account ON vouchers(account, status);
CREATE TABLE IF NOT EXISTS accounts(
    account TEXT PRIMARY KEY, opened INTEGER NOT NULL DEFAULT 0,
    attempted INTEGER NOT NULL DEFAULT 0, client_key BLOB);
CREATE TABLE IF NOT EXISTS reveals(
    account TEXT NOT NULL, vid BLOB NOT NULL, epoch INTEGER NOT NULL, ad BLOB NOT NULL,
    revealed REAL NOT NULL, PRIMARY KEY(account, vid));
CREATE TABLE IF NOT EXISTS audit(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, account TEXT,
    event TEXT NOT NULL, vid BLOB, detail TEXT NOT NULL DEFAULT '');
"""


def key_id(client_key: bytes) -> str:
    """Printable id of a client's public key (audit rows, reveal listings)."""
    return hashlib.sha256(b"blindmatch-tpsi-v1|client-key|" + client_key).hexdigest()[:32]


@dataclass(frozen=True)
class StoredVoucher:
    vid: bytes
    epoch: int
    status: int
    inner: bytes


@dataclass(frozen=True)
class Reveal:
    """One revealed voucher: its id (hex), epoch, plaintext AD and when it was revealed."""

    voucher_id: str
    epoch: int
    ad: bytes
    revealed_at: float

    def as_json(self) -> dict[str, Any]:
        try:
            text: str | None = self.ad.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return {
            "voucher_id": self.voucher_id,
            "epoch": self.epoch,
            "ad_hex": self.ad.hex(),
            "ad_text": text,
            "revealed_at": self.revealed_at,
        }


class TpsiStore:
    """One connection, serialised by a lock (handlers run on a thread pool)."""

    def __init__(self, path: Path, max_pages: int | None = None) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                str(path), timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES('schema', ?)", (SCHEMA_VERSION,))
            elif row[0] == "1":  # v1 accounts have no key yet: bound on their next upload
                self._db.execute("ALTER TABLE accounts ADD COLUMN client_key BLOB")
                self._db.execute("UPDATE meta SET value=? WHERE key='schema'", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise CorruptStoreError(f"{path}: unknown tpsi schema {row[0]!r}")
            if max_pages is not None:
                self._db.execute(f"PRAGMA max_page_count={int(max_pages)}")
        except sqlite3.DatabaseError as e:
            raise CorruptStoreError(f"{path}: cannot open tpsi store ({e})") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _txn(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise StorageUnavailableError(f"storage unavailable: {e}") from None
            try:
                yield self._db
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise StorageUnavailableError(f"storage write failed: {e}") from None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # --- epochs -----------------------------------------------------------
    def max_epoch(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(epoch) FROM epochs").fetchone()
        return int(row[0] or 0)

    def add_epoch(
        self, epoch: int, threshold: int, dhf_dim: int, ad_max: int, digest: bytes
    ) -> None:
        with self._txn() as db:
            db.execute(
                "INSERT OR REPLACE INTO epochs VALUES(?,?,?,?,?,?)",
                (epoch, threshold, dhf_dim, ad_max, digest, time.time()),
            )

    def epoch_params(self) -> dict[int, tuple[int, int, int]]:
        """epoch -> (threshold, dhf_dim, ad_max)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT epoch, threshold, dhf_dim, ad_max FROM epochs"
            ).fetchall()
        return {int(e): (int(t), int(k), int(a)) for e, t, k, a in rows}

    # --- vouchers ---------------------------------------------------------
    def insert_batch(
        self,
        account: str,
        rows: Sequence[tuple[bytes, int, bytes, int, bytes | None]],
        client_key: bytes,
        bind_on_first_use: bool = True,
    ) -> tuple[int, int]:
        """Store (vid, epoch, digest, status, inner) rows atomically; returns (new, duplicates).

        The batch is stored only if ``client_key`` is the key the account is
        bound to; an account without a key is bound to it here when
        ``bind_on_first_use`` (the check and the binding are one transaction).
        """
        now = time.time()
        new = dup = opened = 0
        with self._txn() as db:
            self._check_key(db, account, client_key, bind_on_first_use, now)
            for vid, epoch, digest, status, inner in rows:
                cur = db.execute(
                    "INSERT OR IGNORE INTO vouchers VALUES(?,?,?,?,?,?,?)",
                    (vid, account, epoch, now, digest, status, inner),
                )
                if cur.rowcount == 1:
                    new += 1
                    opened += status != 0
                else:
                    dup += 1
            db.execute(
                "INSERT INTO accounts(account, opened) VALUES(?, ?) "
                "ON CONFLICT(account) DO UPDATE SET opened = opened + excluded.opened",
                (account, opened),
            )
        return new, dup

    @staticmethod
    def _check_key(
        db: sqlite3.Connection, account: str, client_key: bytes, bind: bool, now: float
    ) -> None:
        row = db.execute("SELECT client_key FROM accounts WHERE account=?", (account,)).fetchone()
        bound = None if row is None or row[0] is None else bytes(row[0])
        if bound is not None:
            if not hmac.compare_digest(bound, client_key):
                raise AccountKeyMismatchError("this account is bound to another client key")
            return
        if not bind:
            raise AccountNotEnrolledError("no client key is enrolled for this account")
        _set_client_key(db, now, account, client_key, "account_bound", {})

    def enroll(self, account: str, client_key: bytes) -> None:
        """Operator enrolment: bind (or re-bind) an account to a client key, audited."""
        with self._txn() as db:
            row = db.execute(
                "SELECT client_key FROM accounts WHERE account=?", (account,)
            ).fetchone()
            old = None if row is None or row[0] is None else key_id(bytes(row[0]))
            _set_client_key(db, time.time(), account, client_key, "account_enrolled", {"previous": old})

    def client_key(self, account: str) -> bytes | None:
        with self._lock:
            row = self._db.execute(
                "SELECT client_key FROM accounts WHERE account=?", (account,)
            ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def opened(self, account: str) -> list[StoredVoucher]:
        with self._lock:
            rows = self._db.execute(
                "SELECT vid, epoch, status, inner FROM vouchers WHERE account=? AND status!=0 "
                "ORDER BY received, vid",
                (account,),
            ).fetchall()
        return [StoredVoucher(bytes(v), int(e), int(s), bytes(i or b"")) for v, e, s, i in rows]

    def pending(self, account: str) -> bool:
        """Has the account gained opened vouchers since the last reveal attempt?"""
        with self._lock:
            row = self._db.execute(
                "SELECT opened, attempted FROM accounts WHERE account=?", (account,)
            ).fetchone()
        return row is not None and int(row[0]) > int(row[1])

    def opened_count(self, account: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT opened FROM accounts WHERE account=?", (account,)
            ).fetchone()
        return 0 if row is None else int(row[0])

    def pending_accounts(self) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT account FROM accounts WHERE opened > attempted"
            ).fetchall()
        return [str(r[0]) for r in rows]

    def mark_attempted(self, account: str, opened: int) -> None:
        with self._txn() as db:
            db.execute(
                "UPDATE accounts SET attempted=MAX(attempted, ?) WHERE account=?", (opened, account)
            )

    def voucher_count(self, account: str | None = None) -> int:
        with self._lock:
            if account is None:
                row = self._db.execute("SELECT COUNT(*) FROM vouchers").fetchone()
            else:
                row = self._db.execute(
                    "SELECT COUNT(*) FROM vouchers WHERE account=?", (account,)
                ).fetchone()
        return int(row[0])

    # --- reveals and audit -----------------------------------------------
    def record_reveals(
        self,
        account: str,
        reveals: Sequence[tuple[bytes, int, bytes]],
        events: Sequence[tuple[str, dict[str, Any]]] = (),
    ) -> int:
        """Insert reveals (vid, epoch, ad) and their audit rows in one transaction."""
        now = time.time()
        n = 0
        with self._txn() as db:
            q = "SELECT 1 FROM reveals WHERE account=? AND vid=?"
            fresh = [r for r in reveals if db.execute(q, (account, r[0])).fetchone() is None]
            for event, detail in events:
                if event == "threshold_reached" and not fresh:
                    continue  # another process got there first
                _audit_row(db, now, account, event, detail)
            for vid, epoch, ad in fresh:
                cur = db.execute(
                    "INSERT OR IGNORE INTO reveals VALUES(?,?,?,?,?)",
                    (account, vid, epoch, ad, now),
                )
                if cur.rowcount == 1:
                    n += 1
                    _audit_row(db, now, account, "reveal", {"ad_bytes": len(ad)}, vid)
        return n

    def audit(self, account: str | None, event: str, detail: dict[str, Any]) -> None:
        with self._txn() as db:
            _audit_row(db, time.time(), account, event, detail)

    def audit_log(self, account: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            if account is None:
                rows = self._db.execute(
                    "SELECT seq, ts, account, event, vid, detail FROM audit ORDER BY seq"
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT seq, ts, account, event, vid, detail FROM audit WHERE account=? "
                    "ORDER BY seq",
                    (account,),
                ).fetchall()
        return [
            {
                "seq": s,
                "ts": ts,
                "account": a,
                "event": e,
                "voucher_id": bytes(v).hex() if v is not None else None,
                "detail": json.loads(d or "{}"),
            }
            for s, ts, a, e, v, d in rows
        ]

    def revealed_vids(self, account: str) -> set[bytes]:
        with self._lock:
            rows = self._db.execute(
                "SELECT vid FROM reveals WHERE account=?", (account,)
            ).fetchall()
        return {bytes(r[0]) for r in rows}

    def reveals(self, account: str) -> list[Reveal]:
        with self._lock:
            return _reveals(self._db, account)


def _reveals(db: sqlite3.Connection, account: str) -> list[Reveal]:
    rows = db.execute(
        "SELECT vid, epoch, ad, revealed FROM reveals WHERE account=? ORDER BY revealed, vid",
        (account,),
    ).fetchall()
    return [Reveal(bytes(v).hex(), int(e), bytes(a), float(r)) for v, e, a, r in rows]


def read_reveals(state_dir: Path, account: str) -> list[Reveal]:
    """Read-only listing for the admin CLI; never creates or modifies the store."""
    path = Path(state_dir) / DB_NAME
    if not path.is_file():
        raise CorruptStoreError(f"{path}: no tpsi store here (has the server run tpsi?)")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
        try:
            return _reveals(db, account)
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        raise CorruptStoreError(f"{path}: cannot read tpsi store ({e})") from None


def _audit_row(
    db: sqlite3.Connection,
    ts: float,
    account: str | None,
    event: str,
    detail: dict[str, Any],
    vid: bytes | None = None,
) -> None:
    db.execute(
        "INSERT INTO audit(ts, account, event, vid, detail) VALUES(?,?,?,?,?)",
        (ts, account, event, vid, json.dumps(detail, sort_keys=True)),
    )


def _set_client_key(
    db: sqlite3.Connection, ts: float, account: str, client_key: bytes, event: str, detail: dict[str, Any]
) -> None:
    """Bind ``account`` to ``client_key`` and audit it as ``event`` (the key's id added to ``detail``)."""
    db.execute(
        "INSERT INTO accounts(account, client_key) VALUES(?, ?) "
        "ON CONFLICT(account) DO UPDATE SET client_key = excluded.client_key",
        (account, client_key),
    )
    _audit_row(db, ts, account, event, {"key": key_id(client_key), **detail})
