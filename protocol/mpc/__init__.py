"""``mpc``: fuzzy matching by three servers holding replicated secret shares of the hash.

The client splits its hash bits into replicated 2-out-of-3 shares over GF(8191)
(Araki, Furukawa, Lindell, Nof, Ohara, CCS 2016) and seals each party's pair in a
box only that party can open. The three parties hold the hash set in the clear
(or, with ``set_sharing="shared"``, only replicated shares of it dealt by the list
holder: then the distances cost one re-shared inner product per entry), compute
the client's Hamming distance to every entry, test "distance ≤ r"
with the product Π_j (w² − j²), OR all entries by a product tree, multiply by
random masks and open the result only to the learner: the client (default) or
party 0, the provider (server-learns). In count mode (``output="count"``) the
learner gets the number of entries within r instead. See docs/protocols/mpc.md.

Trust: semi-honest parties with an honest majority. One party alone learns
nothing about the hash; **any two colluding parties learn the hash**. The client
may be malicious: non-bit inputs and disagreeing replicated copies are refused.
The client learns the parties' box keys from party 0's manifest, in which each
party signs its own entry; a client that pins all three signing keys
(``pinned_signing_keys``) refuses a party 0 that names keys of its own for the
others, and **a client that does not pin the three parties' keys trusts party 0
to name the others** (a lying party 0 would receive all three shares).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
from ..costfloor import CostFloor, Floor
from ..errors import (
    BadHashError,
    BlindmatchError,
    LengthError,
    PartyProtocolError,
    PartyUnavailableError,
    SignatureError,
    UnknownPartyError,
    WrongProtocolError,
)
from ..hashes import ALGO_IDS, HashAlgo, HashSet
from ..hazmat.kex import KexKey
from ..options import Options
from ._boxes import box_keys
from ._circuit import MASKS, SetColumns, read_outputs
from ._field import ELEMENT_BYTES, P, from_wire, to_wire
from ._options import MpcClientOptions, MpcServerOptions
from ._party import PartyConfig, PartyNode, load_identity, parse_peers, pinned_key_reader
from ._sharedset import SharedColumns, SharedSetFile, deal_shared_set, share_file_name
from ._sharing import share_vector
from ._wire import (
    PROTOCOL_ID,
    MpcAck,
    MpcManifest,
    MpcQuery,
    MpcReply,
    PartyInfo,
    QueryMode,
    entry_message,
    manifest_head,
)
from ._workers import ShardPool, shard_bounds

__all__ = [
    "MPC",
    "MpcClient",
    "MpcClientOptions",
    "MpcServer",
    "MpcServerOptions",
    "describe_state",
    "load_identity",
    "parse_peers",
    "share_set",
]

_BOX_OVERHEAD = 48


def output_elements(count: bool) -> int:
    """Field elements per party in the result: the masked OR values (count mode: the count first)."""
    return 1 + MASKS if count else MASKS


class MpcServer(ServerHalf):
    """One party's HTTP face: the signed manifest everywhere, queries at party 0."""

    def __init__(
        self, hashes: HashSet, state_dir: Path, cfg: PartyConfig, radius: int, shared_set: bool = False
    ) -> None:
        self.algo = hashes.algo
        self.radius = radius
        self.ident = load_identity(state_dir, cfg.index)
        self.cfg = cfg
        cols: SetColumns | SharedColumns
        if shared_set:  # the clear set in the set dir is not read: the dealt share is the set
            share = SharedSetFile.load(
                state_dir / share_file_name(cfg.index), cfg.index, ALGO_IDS[self.algo.name], self.algo.bits
            )
            self.set_size, self.set_digest = len(share.a), share.commitment
            cols = SharedColumns.build(share, radius)
        else:
            self.set_size = len(hashes)
            self.set_digest = hashlib.sha256(hashes.raw()).digest()
            start, stop = shard_bounds(len(hashes), cfg.workers)[0]
            cols = SetColumns.build(hashes.words[start:stop], radius)
        config = cfg.digest(self.set_digest, self.algo.name, radius)
        self.head = manifest_head(
            ALGO_IDS[self.algo.name], radius, self.set_size, self.set_digest, cfg.chunk, MASKS
        )
        own = entry_message(self.head, cfg.index, self.ident.signing_pub, self.ident.kex_pub)
        self.entry = self.ident.signing.sign(own)
        self.node = PartyNode(
            self.ident, cfg, cols, self.algo.bits, config, pinned_key_reader(state_dir), entry=self.entry
        )
        self.pool: ShardPool | None = None
        if cfg.workers > 1:
            try:
                self.pool = ShardPool(
                    state_dir, cfg, hashes.words, radius, self.algo.bits, self.set_digest, self.algo.name
                )
            except BlindmatchError:
                self.node.close()
                raise
            self.node.shards = self.pool
        self._lock = threading.Lock()
        self._log: list[tuple[str, ServerVerdict]] = []

    def manifest(self) -> MpcManifest:
        """The parties' self-signed entries (peers' from their handshakes), signed by this party."""
        entries = self.node.peer_entries(self.cfg.connect_wait_s)
        if self.pool is not None:  # no client is told to query before every shard can run
            self.pool.wait_connected(self.cfg.connect_wait_s)
        entries[self.cfg.index] = (self.ident.kex_pub, self.entry)
        parties = tuple(
            PartyInfo(
                self.node.pinned(j) if j != self.cfg.index else self.ident.signing_pub,
                entries[j][0],
                f"{self.cfg.peers[j][0]}:{self.cfg.peers[j][1]}",
                entries[j][1],
            )
            for j in range(3)
        )
        m = MpcManifest(
            ALGO_IDS[self.algo.name],
            self.radius,
            self.set_size,
            self.set_digest,
            self.cfg.chunk,
            MASKS,
            parties,  # type: ignore[arg-type]
        ).signed(self.ident.signing)
        try:
            m.verify()
        except SignatureError as e:  # a peer signed another head: another set size or radius
            raise PartyProtocolError(f"a peer's manifest entry does not match: {e.detail}") from None
        return m

    def _manifest(self, req: Request) -> Reply:
        return Reply(self.manifest().to_bytes())

    def _query(self, req: Request) -> Reply:
        if self.cfg.index != 0:
            raise UnknownPartyError("queries go to party 0, which relays the sealed boxes")
        q = MpcQuery.from_bytes(req.body)
        mode = QueryMode.from_byte(q.mode)
        with self._lock:
            outcome, results, seal_own = self.node.lead(q.mode, q.eph_pub, q.boxes)
        if mode.server_learns:
            assert outcome.opened is not None
            matched, count = read_outputs(outcome.opened, mode.count)
            verdict = ServerVerdict(matched, at=time.time(), count=count)
            self._log.append((req.client_id, verdict))
            return Reply(MpcAck().to_bytes(), headers=self._cost_headers())
        assert outcome.component is not None
        own = seal_own(to_wire(outcome.component))
        return Reply(MpcReply((own, results[1], results[2])).to_bytes(), headers=self._cost_headers())

    def _cost_headers(self) -> dict[str, str]:
        """Party 0's bytes to the other parties this query (data-independent: public)."""
        return {"x-blindmatch-mpc-party-bytes": str(self.node.last_party_bytes)}

    def server_verdicts(self, account: str) -> list[ServerVerdict]:
        """Server-learns verdicts party 0 opened for ``account``, in query order."""
        return [v for a, v in self._log if a == account]

    @property
    def last_party_bytes(self) -> int:
        """Bytes this party sent to the other two during its last query."""
        return self.node.last_party_bytes

    def endpoints(self) -> Sequence[Endpoint]:
        return [
            Endpoint(
                "GET",
                "manifest",
                self._manifest,
                max_body=1024,
                summary="Party 0's signed manifest: set digest, radius, the three parties' keys",
            ),
            Endpoint(
                "POST",
                "query",
                self._query,
                max_body=16 * 1024,
                rate_limited=True,
                summary="Three sealed share boxes; answers sealed result boxes (or an ack)",
            ),
        ]

    def setup_bytes(self) -> int:
        return 0

    def close(self) -> None:
        self.node.close()
        if self.pool is not None:
            self.pool.close()


class UnconfiguredServer(ServerHalf):
    """Served when this process is not a party: every call is a typed 503."""

    def _refuse(self, req: Request) -> Reply:
        raise PartyUnavailableError("this server is not an mpc party (start it with --mpc-party)")

    def endpoints(self) -> Sequence[Endpoint]:
        return [
            Endpoint("GET", "manifest", self._refuse, max_body=1024),
            Endpoint("POST", "query", self._refuse, max_body=16 * 1024, rate_limited=True),
        ]

    def setup_bytes(self) -> int:
        return 0


class MpcClient(ClientHalf):
    """Shares the hash, seals a box per party, sends them to party 0, opens the result boxes."""

    def __init__(self, algo: HashAlgo, options: MpcClientOptions) -> None:
        self.algo = algo
        self.mode = QueryMode(options.mode == "server-learns", options.output == "count")
        self.pinned = options.pins()
        self.manifest: MpcManifest | None = None

    def _load_manifest(self, transport: Transport) -> MpcManifest:
        """Fetch, verify and pin the manifest; every check runs before any share is sent.

        With all three keys pinned a party 0 that names keys of its own for parties
        1 and 2 is refused here. Unpinned, the keys are trusted on first use for this
        client's lifetime, and party 0 is trusted to name the other two parties.
        """
        if self.manifest is not None:
            return self.manifest
        m = MpcManifest.from_bytes(transport.get("manifest").body)
        m.verify()
        for i, pin in enumerate(self.pinned):
            if pin is not None and not hmac.compare_digest(m.parties[i].signing_pub, pin):
                raise SignatureError(f"party {i}'s entry is signed by a key other than the pinned one")
        if m.algo_id != ALGO_IDS[self.algo.name]:
            raise WrongProtocolError("the parties hold a set of another hash algorithm")
        self.pinned = (m.parties[0].signing_pub, m.parties[1].signing_pub, m.parties[2].signing_pub)
        self.manifest = m
        return m

    def scan(self, query: Query, transport: Transport) -> ScanResult:
        if query.hash.algo != self.algo:
            raise BadHashError(f"client is for {self.algo.name}, query is {query.hash.algo.name}")
        up0, down0 = transport.bytes_up, transport.bytes_down
        m = self._load_manifest(transport)
        t0 = time.perf_counter()
        body, keys = self._seal(query.hash.bits(), m, self.mode.to_byte())
        cpu = elapsed_ms(t0)
        rep = transport.post("query", body)
        t1 = time.perf_counter()
        verdict: bool | None = None
        count: int | None = None
        extra: dict[str, Any] = {
            "mode": "server-learns" if self.mode.server_learns else "client-learns",
            "output": "count" if self.mode.count else "any",
        }
        if self.mode.server_learns:
            MpcAck.from_bytes(rep.body)
        else:
            opened = self._open_reply(MpcReply.from_bytes(rep.body), keys)
            verdict, count = read_outputs(opened, self.mode.count)
        cpu += elapsed_ms(t1)
        extra["party0_bytes"] = int(rep.headers.get("x-blindmatch-mpc-party-bytes", 0))
        return ScanResult(
            matched=verdict,
            count=count,
            bytes_up=transport.bytes_up - up0,
            bytes_down=transport.bytes_down - down0,
            crypto_ms=cpu,
            extra=extra,
        )

    def _open_reply(self, reply: MpcReply, keys: list[Any]) -> np.ndarray:
        """Add the three parties' output components (each in its own sealed box)."""
        n = output_elements(self.mode.count)
        total = np.zeros(n, dtype=np.uint32)
        for j in range(3):
            plain = keys[j].open_reply(reply.boxes[j])
            if len(plain) != n * ELEMENT_BYTES:
                raise LengthError("result box of the wrong size")
            total += from_wire(plain, n)
        return total % P

    def _seal(self, bits: np.ndarray, m: MpcManifest, mode: int) -> tuple[bytes, list[Any]]:
        comps = share_vector(bits.astype(np.uint32))
        eph = KexKey.generate()
        eph_pub = eph.public_bytes
        keys = [box_keys(eph, m.parties[j].kex_pub, eph_pub, j, mode) for j in range(3)]
        boxes = tuple(keys[j].seal_request(to_wire(comps[j]) + to_wire(comps[(j + 1) % 3])) for j in range(3))
        return MpcQuery(mode, eph_pub, boxes).to_bytes(), keys  # type: ignore[arg-type]


def share_set(hashes: HashSet, out_dir: Path | str) -> bytes:
    """Deal ``hashes`` into the three parties' share files ``set-share-I.bin`` (0600) in ``out_dir``.

    Returns the commitment D that the parties' manifest and handshake carry instead of the
    clear set's digest. Each file goes to its party's state directory (``state/mpc``); the
    dealer then deletes the others: any two files together are the set.
    """
    return deal_shared_set(hashes.words, ALGO_IDS[hashes.algo.name], Path(out_dir))


def describe_state(state_dir: Path | str) -> dict[str, Any]:
    """The parties' public signing keys in a state dir (for ``db info``); no secrets.

    Each operator publishes its own ``party-I.pub``; a client pins all three
    (``pinned_signing_keys``), each obtained from its own operator, so that party 0
    cannot name keys of its own for the other two.
    """
    keys = []
    for i in range(3):
        p = Path(state_dir) / f"party-{i}.pub"
        raw = p.read_bytes() if p.is_file() else b""
        keys.append(raw.hex() if len(raw) == 32 else None)
    whole = None if None in keys else ",".join(k for k in keys if k)
    return {"signing_keys": keys, "pinned_signing_keys": whole}


class Mpc(Protocol):
    name = "mpc"
    protocol_id = PROTOCOL_ID
    learner = Learner.CLIENT_OR_SERVER
    matching = Matching.FUZZY
    supported_algos = ("pdq", "phash", "dhash")
    server_processes = 3
    leakage = Leakage(
        client=(
            "whether some set entry is within the radius (client-learns); nothing in server-learns",
            "count mode: how many set entries are within the radius (mod 8191), not which",
            "the set size and the parties' keys (signed manifest)",
        ),
        server=(
            "any single party: nothing about the hash (honest majority)",
            "TWO COLLUDING PARTIES LEARN THE HASH IN FULL (with set_sharing='shared', also the set)",
            "the hash set: every party holds it in the clear by default; with set_sharing='shared' "
            "one party learns only its size (its share components are independent of the set)",
            "party 0 alone learns the hash from a client that does not pin the three parties' keys "
            "(it names the others' keys; pinned_signing_keys closes this)",
            "party 0 in server-learns: whether the query matched (count mode: how many entries matched)",
            "query timing and volume at every party",
        ),
        network=("fixed-size sealed boxes client↔party 0 and AES-GCM frames of fixed size between parties",),
        server_sees_hash=False,
        client_sees_set=False,
    )

    server_options_type = MpcServerOptions
    client_options_type = MpcClientOptions

    def open_server(
        self, hashes: HashSet, state_dir: Path, options: Mapping[str, Any] | Options | None = None
    ) -> ServerHalf:
        opts = MpcServerOptions.from_options(options)
        if opts.party is None:
            return UnconfiguredServer()
        if not opts.peers:
            raise UnknownPartyError("an mpc party needs --mpc-peers HOST:PORT,HOST:PORT,HOST:PORT")
        cfg = PartyConfig(
            opts.party,
            parse_peers(opts.peers),
            chunk=opts.chunk,
            timeout_s=opts.timeout_s,
            workers=opts.workers,
            port_step=opts.worker_port_step,
        )
        radius = hashes.algo.default_threshold if opts.radius is None else opts.radius
        return MpcServer(hashes, state_dir, cfg, radius, shared_set=opts.set_sharing == "shared")

    def new_client(
        self,
        algo: HashAlgo,
        cache_dir: Path | None = None,
        options: Mapping[str, Any] | Options | None = None,
    ) -> ClientHalf:
        return MpcClient(algo, MpcClientOptions.from_options(options))

    def download_bytes(self, set_size: int, algo: HashAlgo) -> int:
        return 0

    def cost_floor(
        self,
        set_size: int,
        algo: HashAlgo,
        server_options: Mapping[str, Any] | Options | None = None,
        client_options: Mapping[str, Any] | Options | None = None,
    ) -> CostFloor:
        """Bytes: the query's three boxes and the result boxes; both are fixed by the hash size."""
        count = MpcClientOptions.from_options(client_options).output == "count"
        return CostFloor(
            bytes_per_query=Floor.constant(
                float(self.query_bytes(algo) + 3 * (output_elements(count) * ELEMENT_BYTES + _BOX_OVERHEAD)),
                "3 sealed boxes of 2 share components up + 3 sealed boxes of the outputs down",
            ),
            params={"p": P, "masks": MASKS, "element_bytes": ELEMENT_BYTES},
        )

    @staticmethod
    def query_bytes(algo: HashAlgo) -> int:
        """Client upload per query (three boxes of two components, plus framing)."""
        return 4 + 4 * 5 + 1 + 32 + 3 * (2 * algo.bits * ELEMENT_BYTES + _BOX_OVERHEAD)


MPC = register(Mpc())
