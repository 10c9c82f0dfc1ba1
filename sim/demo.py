"""The walking-skeleton demo: images → set → real server on loopback → scan → table.

Kept as a smoke path (``blindmatch demo``) beside the simulator: it exercises the
real CLI-facing pieces (set directory, uvicorn server, HTTP transport) in seconds.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from blindmatch.client import ScanItem, Scanner, hash_bytes
from blindmatch.protocol import REGISTRY
from blindmatch.server import LiveServer, SetDir
from blindmatch.server.testing import LiveParties
from PIL import Image
from rich.console import Console
from rich.table import Table

from blindmatch.corpus import iter_corpus

__all__ = ["run_demo"]


def _jpeg(img: Image.Image, q: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=q)
    return buf.getvalue()


def run_demo(out: Path, images: int = 24, seed: int = 1, build_only: bool = False) -> None:
    console = Console()
    out.mkdir(parents=True, exist_ok=True)
    corpus = list(iter_corpus(seed, images))
    known = corpus[: images // 2]
    unknown = corpus[images // 2 :]
    set_dir = out / "set"
    hashes = [hash_bytes(_png(img)).hash for _, img in known]
    sd = SetDir.build(set_dir, hashes[0].algo, hashes, ["demo corpus"])
    console.print(f"set: {len(sd.hashes)} PDQ hashes, root digest {sd.digest[:16]}…")
    if build_only:
        return
    protocols = [n for n in sorted(REGISTRY) if n in ("plain", "oprf", "tpsi", "he", "mpc")]
    table = Table(title="blindmatch demo: JPEG q90 copies of set images vs unrelated images")
    for col in ("protocol", "image", "truth", "matched", "distance", "client ms", "bytes up", "bytes down"):
        table.add_column(col)
    with (
        LiveServer(set_dir, env={"BLINDMATCH_TPSI_THRESHOLD": "3"}) as srv,
        LiveParties(set_dir) as parties,
        tempfile.TemporaryDirectory() as cache,
    ):
        samples = [
            *[("known", k, True) for k in known[:3]],
            *[("unknown", u, False) for u in unknown[:3]],
        ]
        items = [ScanItem(_jpeg(img, 90), img_name, img_name.encode()) for _, (img_name, img), _ in samples]
        for name in protocols:
            url = parties.url if REGISTRY[name].server_processes > 1 else srv.url
            with Scanner(url, name, algo=sd.algo, account="demo-account", cache_dir=Path(cache) / name,
                         min_quality=0, batch_size=1, strict=True) as scanner:
                for (label, _, truth), v in zip(samples, scanner.iter_scan(items), strict=True):
                    table.add_row(
                        name, f"{v.name} ({label})", str(truth),
                        "—" if v.matched is None else str(v.matched),
                        "" if v.distance is None else str(v.distance),
                        f"{v.crypto_ms:.2f}", str(v.bytes_up), str(v.bytes_down),
                    )
    console.print(table)
    console.print("'—' means the client cannot know (server-learns protocols).")


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
