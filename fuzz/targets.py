"""atheris fuzz targets, one per decoder family, built generically from the registry.

A target is a list of *slots*; byte 0 of a fuzz input picks the slot, the rest is
the payload. Families:

- ``proto-<name>`` for every registered protocol: each server endpoint handler
  (payload = request body, or the If-None-Match value for GET), each wire
  decoder the protocol's recorded traffic uses (payload = message bytes), and
  each response its real client reads (payload replaces the live server answer
  to a fresh real client). Seeds are the recorded real messages.
- ``wire``: ``protocol.wire.decode_fields`` with fuzzed expectations.
- ``image``: ``client.decode_image`` plus PDQ hashing of what decodes.
- ``setdir``: ``server.SetDir.open`` on a fuzzed ``set.json`` or ``hashes.bin``.
- ``hashlist``: the CLI's hash-list reader (``blindmatch.cli.read_hash_file``).

A finding is any exception that is not a ``BlindmatchError`` (plus a 5xx reply,
or mutated bytes that decode back to the original message): the slot raises
``FuzzFinding`` and atheris stops with a crash file.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FuzzFinding", "Target", "build", "families"]


class FuzzFinding(AssertionError):
    """A bad input did something other than a typed error."""


@dataclass
class Target:
    name: str
    slots: list[tuple[str, Callable[[bytes], None]]] = field(default_factory=list)
    seeds: list[bytes] = field(default_factory=list)

    def __call__(self, data: bytes) -> None:
        if not data:
            return
        self.slots[data[0] % len(self.slots)][1](data[1:])

    def seed(self, slot: int, payload: bytes) -> None:
        self.seeds.append(bytes([slot]) + payload)


def families() -> list[str]:
    from blindmatch.protocol import REGISTRY

    # a multi-process protocol's handlers run only in its party processes (see
    # harness.Recording.in_process): its decoders are in the bad-input batteries, its
    # endpoints get bad input over HTTP (tests/test_limits.py, tests/test_api_schemathesis.py)
    procs = sorted(n for n, p in REGISTRY.items() if p.server_processes == 1)
    return ["wire", "image", "setdir", "hashlist"] + [f"proto-{n}" for n in procs]


def _enforce(o: object) -> None:
    if not o.ok:  # type: ignore[attr-defined]
        raise FuzzFinding(f"{o.kind}: {o.detail}")  # type: ignore[attr-defined]


def _proto(name: str, work: Path) -> Target:
    from blindmatch.protocol import REGISTRY, Request
    from blindmatch.reliability import harness as H

    prepared = os.environ.get("BLINDMATCH_FUZZ_PREPARED")
    if prepared:
        _, recs = H.load_prepared(Path(prepared), [name])
        rec = recs[name]
    else:
        rec = H.record_protocol(REGISTRY[name], work / name)
    t = Target(f"proto-{name}")

    def nseeds(method: str, path: str) -> int:
        return 1 if rec.seconds(method, path) > 0.5 else 4  # costly handlers (HE): one seed
    for ep in rec.endpoints() if rec.in_process else []:
        if ep.method == "GET":
            def get(payload: bytes, ep=ep) -> None:
                hdr = {"if-none-match": payload.decode("latin-1")} if payload else {}
                try:
                    rep = ep.handler(Request(b"", hdr, "fuzz"))
                except H.BlindmatchError:
                    return
                if rep.status >= 500:
                    raise FuzzFinding(f"GET {ep.path}: {rep.status}")
            t.slots.append((f"GET {ep.path}", get))
            t.seed(len(t.slots) - 1, b"")
            continue

        def post(payload: bytes, ep=ep) -> None:
            if len(payload) <= ep.max_body:
                _enforce(H.check_endpoint(ep, payload))
        t.slots.append((f"POST {ep.path}", post))
        for s in rec.requests(ep.method, ep.path)[: nseeds(ep.method, ep.path)]:
            t.seed(len(t.slots) - 1, s)
    decs = [d for d in H.discover_decoders() if d.direct]
    samples = H.samples_for(decs, [rec])
    for d in decs:
        if not samples.get(d.name):
            continue

        def dec(payload: bytes, d=d) -> None:
            _enforce(H.check_decoder(d, payload))
        t.slots.append((f"decode {d.name}", dec))
        for s in samples[d.name][:4]:
            t.seed(len(t.slots) - 1, s)
    for target in H.client_targets(rec) if rec.in_process else []:
        def cli(payload: bytes, target=target) -> None:
            _enforce(H.check_client(rec, rec.client_options[0], target, lambda _b: payload))
        t.slots.append((f"client <- {target[0]} {target[1]}", cli))
        if rec.seconds(*target) <= 0.5:  # a client run re-does the whole query
            for s in rec.responses(*target)[:2]:
                t.seed(len(t.slots) - 1, s)
    return t


def _wire() -> Target:
    from blindmatch.protocol import BlindmatchError
    from blindmatch.protocol.wire import decode_fields, encode_fields

    def one(payload: bytes) -> None:
        if len(payload) < 3:
            return
        pid, mtype, n = payload[0], payload[1], payload[2] % 8
        try:
            fields = decode_fields(payload[3:], pid, mtype, n, max_field=4096)
        except BlindmatchError:
            return
        if encode_fields(pid, mtype, fields) != payload[3:]:
            raise FuzzFinding("decode_fields accepted a non-canonical frame")

    t = Target("wire", [("decode_fields", one)])
    t.seed(0, bytes([2, 1, 2]) + encode_fields(2, 1, [b"\x01", bytes(32)]))
    return t


def _image() -> Target:
    from blindmatch.client import decode_image, hash_image
    from blindmatch.protocol import BlindmatchError

    from blindmatch.corpus import generate_image

    def one(payload: bytes) -> None:
        try:
            img = decode_image(payload, "fuzz", max_pixels=4_000_000)
        except BlindmatchError:
            return
        if img.mode != "RGB":
            raise FuzzFinding(f"decode_image returned mode {img.mode}")
        if img.size[0] * img.size[1] <= 1_000_000:
            hash_image(img, "pdq")

    t = Target("image", [("decode_image", one)])
    img = generate_image(3).resize((40, 32))
    for fmt, kw in (("PNG", {}), ("JPEG", {"quality": 80}), ("GIF", {}), ("WEBP", {}), ("BMP", {}),
                    ("TIFF", {}), ("PNG", {"bits": 16})):
        buf = io.BytesIO()
        src = img.convert("I;16") if kw.pop("bits", None) else img
        src.save(buf, fmt, **kw)
        t.seed(0, buf.getvalue())
    return t


def _setdir(work: Path) -> Target:
    from blindmatch.protocol import BlindmatchError, get_algo
    from blindmatch.server import SetDir

    from blindmatch.corpus import random_set

    good = SetDir.build(work / "good", get_algo("pdq"), random_set(6).values(), ["fuzz"])
    files = {n: (good.path / n).read_bytes() for n in ("set.json", "hashes.bin")}
    d = work / "fuzzed"

    def make(which: str) -> Callable[[bytes], None]:
        def one(payload: bytes) -> None:
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            for n, b in files.items():
                (d / n).write_bytes(payload if n == which else b)
            try:
                sd = SetDir.open(d)
            except BlindmatchError as e:
                if "set.json" not in str(e) and "hashes.bin" not in str(e):
                    raise FuzzFinding(f"error does not name the damaged file: {e}") from None
                return
            if len(sd.hashes) == 0 or sd.digest != json.loads((d / "set.json").read_text())["digest"]:
                raise FuzzFinding("opened an inconsistent set")
        return one

    t = Target("setdir", [("set.json", make("set.json")), ("hashes.bin", make("hashes.bin"))])
    t.seed(0, files["set.json"])
    t.seed(1, files["hashes.bin"])
    return t


def _hashlist(work: Path) -> Target:
    from blindmatch.protocol import BlindmatchError

    from blindmatch.cli import read_hash_file
    from blindmatch.corpus import random_set

    p = work / "list.csv"

    def one(payload: bytes) -> None:
        p.write_bytes(payload)
        try:
            vals, _ = read_hash_file(p, "pdq", skip_bad=bool(len(payload) % 2))
        except BlindmatchError:
            return
        except UnicodeDecodeError:
            return  # db build maps this to BadHashError naming the file
        if any(len(v.raw) != 32 for v in vals):
            raise FuzzFinding("wrong-length hash accepted")

    t = Target("hashlist", [("read_hash_file", one)])
    hexes = [v.hex for v in random_set(3).values()]
    t.seed(0, "\n".join(hexes).encode())
    t.seed(0, ("id,hash\n" + "\n".join(f"{i},{h}" for i, h in enumerate(hexes))).encode())
    return t


def build(name: str, work: Path | None = None) -> Target:
    """The target for family ``name``; ``work`` holds its scratch state (a temp dir by default)."""
    work = work or Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    if name.startswith("proto-"):
        return _proto(name.removeprefix("proto-"), work)
    if name == "wire":
        return _wire()
    if name == "image":
        return _image()
    if name == "setdir":
        return _setdir(work)
    if name == "hashlist":
        return _hashlist(work)
    raise KeyError(f"unknown fuzz family {name!r}; choose from {families()}")
