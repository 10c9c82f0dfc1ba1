"""The ``blindmatch`` command line: JSON Lines on stdout, one error line each on stderr.

Why JSON Lines: results are piped into jq/pandas by researchers; errors never
mix into stdout. Exit codes: 0 all inputs fine, 1 some input failed, 2 usage or
configuration error.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from blindmatch.client import (
    PDQ_MIN_QUALITY,
    HashedImage,
    HttpTransport,
    get_algo,
    hash_file,
)
from blindmatch.protocol import (
    BadHashError,
    BlindmatchError,
    HashValue,
    Query,
    get_protocol,
)
from blindmatch.sim.cli import sim_app

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Build and inspect set directories.")
admin_app = typer.Typer(no_args_is_help=True, help="Operator commands on a server's store.")
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(sim_app, name="sim")

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
) -> None:
    """Build a set directory from image folders and/or hash lists."""
    from blindmatch.server import SetDir

    a = get_algo(algo)
    values: list[HashValue] = []
    bad = 0
    for src in sources:
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
            for e in errs:
                _err(f"skipped: {e}")
            bad += len(errs)
            values.extend(vals)
        else:
            raise BadHashError(f"{src}: no such file or folder")
    if bad and not skip_bad:
        raise BadHashError(f"{bad} input(s) failed; refusing to build (use --skip-bad)")
    sd = SetDir.build(out, a, values, [str(s) for s in sources])
    _emit({"set_dir": str(out), "algo": a.name, "count": len(sd.hashes), "digest": sd.digest, "skipped": bad})


@db_app.command("info")
def db_info(set_dir: Annotated[Path, typer.Argument(help="Set directory")]) -> None:
    """Print the set's size and root digest (publishable out of band)."""
    from blindmatch.server import SetDir

    sd = SetDir.open(set_dir)
    _emit({"set_dir": str(set_dir), "algo": sd.algo.name, "count": len(sd.hashes), "digest": sd.digest})


@app.command("serve")
def serve(
    db: Annotated[Path, typer.Option(help="Set directory")],
    host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the set over HTTP (uvicorn)."""
    import os

    import uvicorn

    from blindmatch.server import SetDir

    SetDir.open(db)  # fail fast with a clear message before uvicorn starts
    os.environ["BLINDMATCH_DB"] = str(db)
    uvicorn.run("blindmatch.server.app:app_from_env", factory=True, host=host, port=port, workers=workers)


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
) -> int:
    """Scan every path; returns the number of failed inputs."""
    proto = get_protocol(protocol)
    a = get_algo(algo)
    client = proto.new_client(a, cache_dir, options)
    transport = HttpTransport(server, protocol, client_id=account)
    failed = 0
    try:
        for p in iter_inputs(paths):
            t0 = time.perf_counter()
            try:
                h: HashedImage = hash_file(p, algo)
            except BlindmatchError as e:
                _err(f"error: {e.code}: {e.detail}")
                failed += 1
                continue
            hash_ms = (time.perf_counter() - t0) * 1000
            if not h.matchable(min_quality):
                _emit({"path": str(p), "protocol": protocol, "algo": algo, "matched": False,
                       "skipped": f"quality {h.quality} < {min_quality}", "client_ms": round(hash_ms, 3),
                       "bytes_up": 0, "bytes_down": 0})
                continue
            q = Query(h.hash, h.float_values, h.quality, account, (ad if ad is not None else str(p)).encode())
            try:
                r = client.scan(q, transport)
            except BlindmatchError as e:
                _err(f"error: {p}: {e.code}: {e.detail}")
                failed += 1
                continue
            rec: dict[str, Any] = {"path": str(p), "protocol": protocol, "algo": algo, "matched": r.matched}
            if r.distance is not None:
                rec["distance"] = r.distance
            rec.update({
                "client_ms": round(hash_ms + r.crypto_ms, 3),
                "hash_ms": round(hash_ms, 3),
                "crypto_ms": round(r.crypto_ms, 3),
                "bytes_up": r.bytes_up,
                "bytes_down": r.bytes_down,
            })
            _emit(rec)
    finally:
        transport.close()
    return failed


@app.command("scan")
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Images or folders")],
    server: Annotated[str, typer.Option(help="Server URL, e.g. http://127.0.0.1:8000")],
    protocol: Annotated[str, typer.Option(help="plain | oprf | tpsi | he")] = "plain",
    algo: Annotated[str, typer.Option(help="Hash algorithm; must match the server's set")] = "pdq",
    probe_bits: Annotated[int, typer.Option(help="oprf/tpsi: also probe 2^k flips of the least-stable bits")] = 0,
    mode: Annotated[str, typer.Option(help="he: client-learns | server-learns")] = "client-learns",
    account: Annotated[str | None, typer.Option(help="tpsi: account id")] = None,
    ad: Annotated[str | None, typer.Option(help="tpsi: associated data (default: the path)")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Where one-time downloads are cached")] = None,
    min_quality: Annotated[int, typer.Option(help="Do not match PDQ hashes below this quality")] = PDQ_MIN_QUALITY,
) -> None:
    """Scan images against a server; one JSON line per image."""
    if protocol == "tpsi" and not account:
        raise BadHashError("--account is required with --protocol tpsi")
    cache = cache_dir or Path.home() / ".cache" / "blindmatch"
    options = {"probe_bits": probe_bits, "mode": mode}
    failed = scan_paths(server, protocol, paths, algo, options, account, ad, cache, min_quality)
    if failed:
        raise typer.Exit(1)


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


def main() -> None:
    """Entry point: typed errors become one stderr line and exit code 2."""
    try:
        app(standalone_mode=False)
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
