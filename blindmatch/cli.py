"""The ``blindmatch`` command line: JSON Lines on stdout, one error line each on stderr.

Why JSON Lines: results are piped into jq/pandas by researchers; errors never
mix into stdout. Exit codes: 0 all inputs fine, 1 some input failed, 2 usage or
configuration error.
"""

from __future__ import annotations

import csv
import io
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from blindmatch.client import (
    PDQ_MIN_QUALITY,
    Scanner,
    Verdict,
    get_algo,
    hash_file,
)
from blindmatch.protocol import (
    BadHashError,
    BlindmatchError,
    HashValue,
    ImageError,
    UnknownPartyError,
)
from blindmatch.sim.cli import sim_app

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Build and inspect set directories.")
admin_app = typer.Typer(no_args_is_help=True, help="Operator commands on a server's store.")
app.add_typer(db_app, name="db")
curator_app = typer.Typer(no_args_is_help=True, help="Curators: keys, signed hash lists, set attestations.")
app.add_typer(admin_app, name="admin")
app.add_typer(curator_app, name="curator")
app.add_typer(sim_app, name="sim")
mpc_app = typer.Typer(no_args_is_help=True, help="Run the three mpc parties locally (demos, tests).")
app.add_typer(mpc_app, name="mpc")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".ppm", ".pgm"}


def _err(msg: str) -> None:
    sys.stderr.write(msg.replace("\n", " ") + "\n")


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def iter_inputs(paths: list[Path], images_only: bool = False) -> Iterator[Path]:
    """Files as given; folders recursively (sorted, image suffixes only)."""
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                    yield f
        else:
            yield p


@app.command("hash")
def hash_cmd(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (recursive)")],
    algo: Annotated[str, typer.Option(help="pdq | phash | dhash | sha256")] = "pdq",
    dihedral: Annotated[bool, typer.Option(help="Also print the 8 rotations/flips")] = False,
) -> None:
    """Hash images; one JSON line per image."""
    get_algo(algo)
    failed = 0
    for p in iter_inputs(paths):
        try:
            h = hash_file(p, algo, dihedral=dihedral)
        except BlindmatchError as e:
            _err(f"error: {e.code}: {e.detail}")
            failed += 1
            continue
        rec: dict[str, Any] = {"path": str(p), "algo": algo, "hash": h.hash.hex, "quality": h.quality}
        if dihedral and h.dihedral:
            rec["dihedral"] = [d.hex for d in h.dihedral]
        _emit(rec)
    if failed:
        raise typer.Exit(1)


def read_hash_file(path: Path, algo: str, skip_bad: bool) -> tuple[list[HashValue], list[str]]:
    """Hex hashes, one per line or in a CSV column named ``hash``; errors carry line numbers."""
    a = get_algo(algo)
    text = path.read_text(encoding="utf-8", errors="strict")
    lines = text.splitlines()
    values: list[HashValue] = []
    errors: list[str] = []
    rows: Iterator[tuple[int, str]]
    first = lines[0] if lines else ""
    if "," in first or first.strip().lower() == "hash":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "hash" not in [f.strip().lower() for f in reader.fieldnames]:
            raise BadHashError(f"{path}: CSV has no column named 'hash'")
        col = next(f for f in reader.fieldnames if f.strip().lower() == "hash")
        rows = ((i + 2, (r.get(col) or "")) for i, r in enumerate(reader))
    else:
        rows = ((i + 1, ln) for i, ln in enumerate(lines))
    for lineno, cell in rows:
        s = cell.strip()
        if not s or s.startswith("#"):
            continue
        try:
            values.append(a.from_hex(s))
        except BadHashError as e:
            errors.append(f"{path}:{lineno}: {e.detail}")
    if errors and not skip_bad:
        raise BadHashError(f"{len(errors)} malformed line(s), first: {errors[0]} (use --skip-bad)")
    return values, errors


@db_app.command("build")
def db_build(
    out: Annotated[Path, typer.Option("--out", help="Set directory to write")],
    sources: Annotated[list[Path], typer.Option("--from", help="Image folder or hash list (repeatable)")],
    algo: Annotated[str, typer.Option(help="pdq | phash | dhash | sha256")] = "pdq",
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip malformed lines/images")] = False,
    min_quality: Annotated[int, typer.Option(help="Drop PDQ hashes below this quality")] = PDQ_MIN_QUALITY,
    min_sources: Annotated[int, typer.Option(
        help="Admit a hash only if this many curators in as many jurisdictions signed it "
        "(needs curator-signed lists, see `blindmatch curator sign-list`)")] = 1,
    trusted: Annotated[Path | None, typer.Option(help="JSON {curator: base64 public key} to pin")] = None,
) -> None:
    """Build a set directory from image folders, hash lists, or curator-signed lists."""
    from blindmatch.protocol.curation import SignedList, select_hashes
    from blindmatch.server import SetDir

    a = get_algo(algo)
    values: list[HashValue] = []
    signed: list[SignedList] = []
    bad = 0
    for src in sources:
        if src.is_file() and src.name.endswith(".signed.json"):
            signed.append(SignedList.from_json(src.read_text(), a))
            continue
        if min_sources > 1:
            raise BadHashError(f"{src}: --min-sources {min_sources} admits only curator-signed lists")
        if src.is_dir():
            for p in iter_inputs([src]):
                try:
                    h = hash_file(p, algo)
                except BlindmatchError as e:
                    _err(f"error: {e.code}: {e.detail}")
                    bad += 1
                    continue
                if not h.matchable(min_quality):
                    _err(f"warning: {p}: PDQ quality {h.quality} < {min_quality}, skipped")
                    continue
                values.append(h.hash)
        elif src.is_file():
            try:
                vals, errs = read_hash_file(src, algo, skip_bad)
            except UnicodeDecodeError:
                raise BadHashError(f"{src}: not a UTF-8 text/CSV hash list") from None
            for skipped in errs:
                _err(f"skipped: {skipped}")
            bad += len(errs)
            values.extend(vals)
        else:
            raise BadHashError(f"{src}: no such file or folder")
    if bad and not skip_bad:
        raise BadHashError(f"{bad} input(s) failed; refusing to build (use --skip-bad)")
    extra: dict[str, Any] = {}
    if signed:
        pins = _read_trusted(trusted) if trusted else None
        admitted, counts = select_hashes(signed, max(1, min_sources), pins)
        values.extend(admitted)
        extra = {"curators": sorted({s.curator for s in signed}), **counts}
    sd = SetDir.build(out, a, values, [str(s) for s in sources])
    _emit({"set_dir": str(out), "algo": a.name, "count": len(sd.hashes), "digest": sd.digest,
           "skipped": bad, **extra})


def _read_trusted(path: Path) -> dict[str, bytes]:
    import base64

    try:
        d = json.loads(path.read_text())
        return {str(k): base64.b64decode(v, validate=True) for k, v in d.items()}
    except (OSError, ValueError, AttributeError) as e:
        raise BadHashError(
            f"{path}: not a JSON object of curator -> base64 key ({type(e).__name__})"
        ) from None


@curator_app.command("keygen")
def curator_keygen_cmd(
    out: Annotated[Path, typer.Option(help="Private key file to create (mode 0600)")],
    name: Annotated[str, typer.Option(help="Curator name")],
) -> None:
    """Create a curator's Ed25519 key; prints the public key to publish."""
    import base64

    from blindmatch.protocol.curation import curator_keygen
    from blindmatch.protocol.keyfile import write_secret

    if out.exists():
        raise BadHashError(f"{out}: exists; refusing to overwrite a key")
    sk, pk = curator_keygen()
    write_secret(out, sk)
    _emit({"curator": name, "public_key": base64.b64encode(pk).decode(), "key_file": str(out)})


@curator_app.command("sign-list")
def curator_sign_list(
    hash_list: Annotated[Path, typer.Argument(help="Text/CSV hash list")],
    key: Annotated[Path, typer.Option(help="Curator private key file")],
    name: Annotated[str, typer.Option(help="Curator name")],
    jurisdiction: Annotated[str, typer.Option(help="Curator's jurisdiction, e.g. an ISO country code")],
    out: Annotated[Path, typer.Option(help="Output, must end in .signed.json")],
    algo: Annotated[str, typer.Option(help="Hash algorithm")] = "pdq",
) -> None:
    """Sign a hash list so `db build --min-sources` can count this curator's vote."""
    from blindmatch.protocol.curation import SignedList
    from blindmatch.protocol.keyfile import read_secret

    if not out.name.endswith(".signed.json"):
        raise BadHashError("--out must end in .signed.json")
    a = get_algo(algo)
    values, _ = read_hash_file(hash_list, algo, skip_bad=False)
    sl = SignedList.sign(a, values, name, jurisdiction, read_secret(key, 32))
    out.write_text(sl.to_json())
    _emit({"curator": name, "jurisdiction": jurisdiction, "count": len(sl.hashes), "out": str(out)})


@curator_app.command("attest")
def curator_attest(
    set_dir: Annotated[Path, typer.Argument(help="Set directory to attest")],
    key: Annotated[Path, typer.Option(help="Curator private key file")],
    name: Annotated[str, typer.Option(help="Curator name")],
) -> None:
    """Sign the set's root digest; the server publishes it at GET /v1/set."""
    from blindmatch.protocol.curation import Attestation
    from blindmatch.protocol.keyfile import read_secret
    from blindmatch.server import SetDir

    sd = SetDir.open(set_dir)
    att = Attestation.sign(name, read_secret(key, 32), sd.digest, len(sd.hashes), sd.algo.name)
    sd.add_attestation(att.to_dict())
    _emit({"curator": name, "digest": sd.digest, "attestations": len(sd.attestations())})


@curator_app.command("verify")
def curator_verify(
    trusted: Annotated[Path, typer.Option(help="JSON {curator: base64 public key}")],
    threshold: Annotated[int, typer.Option(help="Curators that must attest")] = 2,
    set_dir: Annotated[Path | None, typer.Option(help="Verify a local set directory")] = None,
    server: Annotated[str | None, typer.Option(help="Or verify what a server serves (GET /v1/set)")] = None,
) -> None:
    """Check that ≥ threshold trusted curators signed the set's root digest."""
    from blindmatch.protocol.curation import Attestation, verify_attestations

    if (set_dir is None) == (server is None):
        raise BadHashError("give exactly one of --set-dir or --server")
    if set_dir is not None:
        from blindmatch.server import SetDir

        sd = SetDir.open(set_dir)
        info: dict[str, Any] = {"digest": sd.digest, "count": len(sd.hashes), "algo": sd.algo.name,
                "attestations": sd.attestations()}
    else:
        import httpx

        try:
            info = httpx.get(f"{server.rstrip('/')}/v1/set", timeout=30).json()  # type: ignore[union-attr]
        except (httpx.HTTPError, ValueError) as e:
            raise BadHashError(f"cannot fetch /v1/set: {e}") from None
    atts = [Attestation.from_dict(d) for d in info["attestations"]]
    ok = verify_attestations(atts, info["digest"], int(info["count"]), info["algo"],
                             _read_trusted(trusted), threshold)
    _emit({"digest": info["digest"], "verified_by": ok, "threshold": threshold})


@db_app.command("info")
def db_info(set_dir: Annotated[Path, typer.Argument(help="Set directory")]) -> None:
    """Print the set's size and root digest (publishable out of band)."""
    from blindmatch.protocol import mpc, oprf, tpsi
    from blindmatch.server import SetDir

    sd = SetDir.open(set_dir)
    _emit({"set_dir": str(set_dir), "algo": sd.algo.name, "count": len(sd.hashes), "digest": sd.digest,
           "attestations": len(sd.attestations()), "oprf": oprf.describe_state(sd.path / "state" / "oprf"),
           "tpsi": tpsi.describe_state(sd.path / "state" / "tpsi"),
           "mpc": mpc.describe_state(sd.path / "state" / "mpc")})


@db_app.command("rotate-tpsi-key")
def db_rotate_tpsi_key(set_dir: Annotated[Path, typer.Argument(help="Set directory")]) -> None:
    """Replace the tpsi manifest signing key; the old key signs the hand-over. Restart the server."""
    from blindmatch.protocol.tpsi import rotate_signing_key
    from blindmatch.server import SetDir

    sd = SetDir.open(set_dir)
    new = rotate_signing_key(sd.state_dir("tpsi"))
    _emit({"set_dir": str(set_dir), "signing_key": new.hex(), "next": "restart the server"})


@db_app.command("rotate")
def db_rotate(
    set_dir: Annotated[Path, typer.Argument(help="Set directory")],
    grace_seconds: Annotated[float, typer.Option(help="How long the old OPRF epoch is still answered")]
    = 7 * 24 * 3600.0,
    mode: Annotated[str | None, typer.Option(
        help="voprf (proofs; default) | oprf (no proofs: cheaper, unverifiable); default: keep the current")]
    = None,
) -> None:
    """Start a new OPRF key epoch (new key, new filter); the old one lives for the grace period."""
    from blindmatch.protocol.oprf import rotate_epoch
    from blindmatch.server import SetDir

    sd = SetDir.open(set_dir)
    ep = rotate_epoch(sd.state_dir("oprf"), sd.hashes, grace_seconds, mode=mode)
    _emit({"set_dir": str(set_dir), "epoch": ep.number, "root_digest": ep.root,
           "grace_seconds": grace_seconds, "mode": ep.server.mode.name.lower()})


@admin_app.command("reveals")
def admin_reveals(
    db: Annotated[Path, typer.Option(help="Set directory the server runs on")],
    account: Annotated[str, typer.Option(help="Account id")],
) -> None:
    """List revealed associated data for an account (tpsi); nothing below threshold."""
    from blindmatch.protocol.tpsi import list_reveals

    for rev in list_reveals(db, account):
        _emit({"account": account, **rev.as_json()})


@admin_app.command("enroll")
def admin_enroll(
    db: Annotated[Path, typer.Option(help="Set directory the server runs on")],
    account: Annotated[str, typer.Option(help="Account id")],
    client_key: Annotated[str, typer.Option(help="The account's client public key (64 hex)")],
) -> None:
    """Bind a tpsi account to a client key (needed with BLINDMATCH_TPSI_ENROLLMENT=admin)."""
    from blindmatch.protocol.tpsi import enroll_account

    try:
        key = bytes.fromhex(client_key)
    except ValueError:
        raise BadHashError("--client-key must be hex") from None
    enroll_account(db, account, key)
    _emit({"account": account, "enrolled": True})


@app.command("serve")
def serve(
    db: Annotated[Path, typer.Option(help="Set directory")],
    host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
    mpc_party: Annotated[int | None, typer.Option(help="Serve as mpc party 0, 1 or 2 (mpc only)")] = None,
    mpc_peers: Annotated[str | None, typer.Option(
        help="mpc: the three parties' channel addresses, HOST:PORT,HOST:PORT,HOST:PORT")] = None,
    mpc_workers: Annotated[int, typer.Option(
        help="mpc: split the set over W processes (same W at every party; shard w on PORT+3w)")] = 1,
) -> None:
    """Serve the set over HTTP (uvicorn, TCP_NODELAY on every connection)."""
    import os

    from blindmatch.server import SetDir
    from blindmatch.server.run import serve as run_server

    SetDir.open(db)  # fail fast with a clear message before uvicorn starts
    os.environ["BLINDMATCH_DB"] = str(db)
    if mpc_party is not None or mpc_peers is not None:
        from blindmatch.protocol.mpc import parse_peers

        if mpc_party not in (0, 1, 2):
            raise UnknownPartyError(f"--mpc-party must be 0, 1 or 2, got {mpc_party}")
        parse_peers(mpc_peers or "")
        if workers != 1:
            raise BadHashError("an mpc party runs one worker process")
        os.environ.update(BLINDMATCH_MPC_PARTY=str(mpc_party), BLINDMATCH_MPC_PEERS=str(mpc_peers),
                          BLINDMATCH_MPC_WORKERS=str(mpc_workers), BLINDMATCH_PROTOCOLS="mpc")
    run_server(host, port, workers)


@mpc_app.command("up")
def mpc_up(
    db: Annotated[Path, typer.Option(help="Set directory (all three parties serve it)")],
    host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Party i: clients on PORT+i, channel on PORT+3+i")] = 8000,
    mpc_workers: Annotated[int, typer.Option(
        help="Processes per party (set shards); shard w's channels on PORT+3(w+1)+i")] = 1,
    shared_set: Annotated[bool, typer.Option(
        help="Deal the set into three share files (state/mpc) and run the parties on the shares")] = False,
) -> None:
    """Start the three mpc parties on this machine; SIGTERM or Ctrl-C stops all three."""
    from blindmatch.protocol.mpc import MpcServerOptions, share_set
    from blindmatch.server import SetDir
    from blindmatch.server.mpc import run_parties

    sd = SetDir.open(db)
    # refuses a bad W (or W > 1 with a shared set) with a typed OptionError
    MpcServerOptions(workers=mpc_workers, set_sharing="shared" if shared_set else "clear")
    if shared_set:  # a demo: all three share files in one state dir (any two are the set)
        share_set(sd.hashes, sd.state_dir("mpc"))
    run_parties(db, host, port, mpc_workers, shared_set)


@mpc_app.command("share-set")
def mpc_share_set(
    db: Annotated[Path, typer.Option(help="Set directory holding the clear list (the dealer's)")],
    out: Annotated[Path, typer.Option(help="Folder for set-share-0.bin .. set-share-2.bin (0600)")],
) -> None:
    """Deal the set into three share files; party I copies set-share-I.bin into its state/mpc."""
    from blindmatch.protocol.mpc import share_set
    from blindmatch.server import SetDir

    digest = share_set(SetDir.open(db).hashes, out)
    typer.echo(f"commitment {digest.hex()}")


def scan_paths(
    server: str,
    protocol: str,
    paths: list[Path],
    algo: str,
    options: dict[str, Any],
    account: str | None,
    ad: str | None,
    cache_dir: Path | None,
    min_quality: int,
    batch_size: int = 1,
) -> int:
    """Scan every path, one JSON line per scanned image; returns the number of failed inputs."""
    failed = 0
    with Scanner(
        server,
        protocol,
        algo=algo,
        options=options,
        account=account,
        associated_data=ad.encode() if ad is not None else None,
        cache_dir=cache_dir,
        min_quality=min_quality,
        batch_size=batch_size,
    ) as scanner:
        for v in scanner.iter_scan(iter_inputs(paths)):
            if v.error is not None:
                where = "" if isinstance(v.error, ImageError) else f"{v.name}: "
                _err(f"error: {where}{v.error.code}: {v.error.detail}")
                failed += 1
            else:
                _emit(_scan_record(v, protocol, algo))
    return failed


def _scan_record(v: Verdict, protocol: str, algo: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"path": v.name, "protocol": protocol, "algo": algo, "matched": v.matched}
    if v.skipped is not None:
        rec.update({"matched": False, "skipped": v.skipped, "client_ms": round(v.hash_ms, 3),
                    "bytes_up": 0, "bytes_down": 0})
        return rec
    if v.distance is not None:
        rec["distance"] = v.distance
    counts = [r.count for r in v.results if r.count is not None]
    if counts:  # mpc --output count; with several variants (dihedral) the largest
        rec["count"] = max(counts)
    rec.update({
        "client_ms": round(v.hash_ms + v.crypto_ms, 3),
        "hash_ms": round(v.hash_ms, 3),
        "crypto_ms": round(v.crypto_ms, 3),
        "bytes_up": v.bytes_up,
        "bytes_down": v.bytes_down,
    })
    return rec


@app.command("scan")
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Images or folders")],
    server: Annotated[str, typer.Option(help="Server URL, e.g. http://127.0.0.1:8000")],
    protocol: Annotated[str, typer.Option(help="plain | oprf | tpsi | he | mpc")] = "plain",
    algo: Annotated[str, typer.Option(help="Hash algorithm; must match the server's set")] = "pdq",
    probe_bits: Annotated[
        int, typer.Option(help="oprf/tpsi: also probe 2^k flips of the least-stable bits")
    ] = 0,
    mode: Annotated[str, typer.Option(help="he, mpc: client-learns | server-learns")] = "client-learns",
    output: Annotated[str, typer.Option(
        help="mpc: any | count (the learner gets the number of set entries within the radius)")] = "any",
    account: Annotated[str | None, typer.Option(help="tpsi: account id")] = None,
    ad: Annotated[str | None, typer.Option(help="tpsi: associated data (default: the path)")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Where one-time downloads are cached")] = None,
    min_quality: Annotated[
        int, typer.Option(help="Do not match PDQ hashes below this quality")
    ] = PDQ_MIN_QUALITY,
    batch_size: Annotated[
        int, typer.Option(help="Images per protocol round (one request where the protocol batches)")
    ] = 1,
    allow_unverified: Annotated[bool, typer.Option(
        help="oprf: accept a server in unverifiable OPRF mode (no DLEQ proofs)")] = False,
    pin_key: Annotated[str | None, typer.Option(
        help="oprf/tpsi: the server's manifest signing key (hex) published out of band; "
             "mpc: the three parties' keys K0,K1,K2 (`db info`), each from its own operator")] = None,
    pin_digest: Annotated[str | None, typer.Option(
        help="oprf: root digest; tpsi: whole-manifest digest (hex, from `db info`)")] = None,
    min_threshold: Annotated[int, typer.Option(help="tpsi: refuse a server whose threshold is lower")] = 10,
    min_synthetic_rate: Annotated[float, typer.Option(
        help="tpsi: refuse a server whose synthetic-voucher rate is lower")] = 0.01,
    allow_server_learns: Annotated[bool, typer.Option(
        help="he: accept server-learns, which protects the hash against a semi-honest server only")] = False,
) -> None:
    """Scan images against a server; one JSON line per image."""
    if protocol == "tpsi" and not account:
        raise BadHashError("--account is required with --protocol tpsi")
    cache = cache_dir or Path.home() / ".cache" / "blindmatch"
    # only the flags the user changed: a protocol rejects options it does not take (OptionError)
    given = {"probe_bits": (probe_bits, 0), "mode": (mode, "client-learns"), "output": (output, "any"),
             "allow_unverified": (allow_unverified, False),
             "allow_server_learns": (allow_server_learns, False),
             "min_threshold": (min_threshold, 10), "min_synthetic_rate": (min_synthetic_rate, 0.01)}
    options: dict[str, Any] = {k: v for k, (v, default) in given.items() if v != default}
    digest_pin = "pinned_manifest_digest" if protocol == "tpsi" else "pinned_root_digest"
    if pin_key:
        options["pinned_signing_keys" if protocol == "mpc" else "pinned_signing_key"] = pin_key
    if pin_digest:
        options[digest_pin] = pin_digest
    failed = scan_paths(server, protocol, paths, algo, options, account, ad, cache, min_quality, batch_size)
    if failed:
        raise typer.Exit(1)


@app.command("bench")
def bench(
    out: Annotated[Path, typer.Option(help="Folder for results.json and results.md")] = Path("runs/bench"),
    suite: Annotated[str, typer.Option(help="micro|protocols|load|peers|all, or a comma list")] = "all",
    sizes: Annotated[str, typer.Option(help="Set sizes, e.g. 1e3,1e4,1e5,1e6")] = "1e3,1e4,1e5",
    repeats: Annotated[int, typer.Option(help="Repeats per measurement (median, min–max)")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic sets and queries")] = 20240601,
    protocols: Annotated[str | None, typer.Option(help="Comma-separated subset of the registry")] = None,
    load_seconds: Annotated[float, typer.Option(help="Duration of each load run")] = 8.0,
    cell_budget: Annotated[float, typer.Option(help="Seconds a protocol×size cell may take before it is "
                                               "extrapolated (and marked so)")] = 600.0,
    publish: Annotated[Path | None, typer.Option(help="Also write BENCHMARKS.md here")] = None,
    from_results: Annotated[Path | None, typer.Option(help="Publish from this results.json only")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Tiny sizes and short runs (smoke test)")] = False,
    note: Annotated[str | None, typer.Option(help="Provenance note stored with the results")] = None,
) -> None:
    """Benchmarks: every protocol against its peer and its physical bound."""
    from blindmatch.bench.runner import cli_bench

    cli_bench(out=out, suite=suite, sizes=sizes, repeats=repeats, seed=seed, protocols=protocols,
              load_seconds=load_seconds, cell_budget=cell_budget, publish_to=publish,
              from_results=from_results, quick=quick, note=note)


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Working folder")] = Path("runs/demo"),
    images: Annotated[int, typer.Option(help="Generated images")] = 24,
    seed: Annotated[int, typer.Option(help="Corpus seed")] = 1,
    build_only: Annotated[bool, typer.Option("--build-only", help="Only build the set")] = False,
) -> None:
    """Walking skeleton: generate images, build a set, serve it, scan known/unknown images."""
    from blindmatch.sim.demo import run_demo

    run_demo(out, images, seed, build_only)


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so context managers stop the servers and parties a command started


def main() -> None:
    """Entry point: typed errors become one stderr line and exit code 2; SIGTERM stops cleanly."""
    signal.signal(signal.SIGTERM, _terminated)  # serve and mpc up install their own handlers
    try:
        rc = app(standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except BlindmatchError as e:
        _err(f"error: {e.code}: {e.detail}")
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        _err("aborted")
        sys.exit(130)
    except Exception as e:  # click usage errors and the like
        import click

        if isinstance(e, click.exceptions.ClickException):
            _err(f"error: usage: {e.format_message()}")
            sys.exit(2)
        if isinstance(e, OSError):
            _err(f"error: os_error: {e}")
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
