"""Every wire decoder, endpoint handler and client half against bad bytes.

Nothing here names a protocol: decoders are discovered by walking the packages
(``harness.discover_decoders``) and valid samples are recorded from each registered
protocol's real client talking to its real server (``harness.record_protocol``).
A protocol merged later is covered the moment it is registered.

The rule: bad bytes give a ``BlindmatchError`` subclass, or decode to a *different*
value that re-encodes exactly; never any other exception, never a 5xx. The
identity point and RFC 9496 non-canonical encodings substituted into a field that
holds ristretto255 points must be rejected by the endpoint or client that reads it.
"""

from __future__ import annotations

import json
import random
import shutil

import pytest
from blindmatch.protocol import REGISTRY, BlindmatchError
from blindmatch.reliability import harness as H
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blindmatch.corpus import random_set

DECODERS = H.discover_decoders()
PROTOCOLS = sorted(REGISTRY)
# Fixed input counts per battery, never a time budget: the same inputs on any machine. he's
# messages, endpoints and client run real SEAL (de)serialisation or homomorphic work per input,
# so they get fewer.
DECODER_TRIES, HE_DECODER_TRIES = 400, 24
ENDPOINT_TRIES = {"he": 40}
CLIENT_TRIES = {"he": 2}
DEFAULT_ENDPOINT_TRIES, DEFAULT_CLIENT_TRIES = 300, 40
HYP = settings(
    max_examples=150, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def recordings() -> dict[str, H.Recording]:
    from ._reliability import recordings as shared

    return shared()


@pytest.fixture(scope="module")
def samples(recordings: dict[str, H.Recording]) -> dict[str, list[bytes]]:
    return H.samples_for(DECODERS, list(recordings.values()))


def _dec_id(d: H.Decoder) -> str:
    return d.name.removeprefix("blindmatch.")


def test_discovery_finds_every_protocol_module(recordings: dict[str, H.Recording]) -> None:
    """Each registered protocol's real client ran, and its module's decoders were found."""
    names = {d.name for d in DECODERS}
    assert "blindmatch.protocol.plain.PlainQuery" in names
    assert "blindmatch.client.images.decode_image" in names
    for rec in recordings.values():
        if not rec.in_process:  # answers only from its party processes (see Recording.in_process)
            continue
        assert rec.client_options, f"{rec.name}: no client variant completed a scan: {rec.errors}"
        assert rec.exchanges, f"{rec.name}: nothing recorded"
        mod = type(rec.protocol).__module__
        if rec.protocol.private:
            assert any(d.name.startswith(mod) for d in DECODERS) or any(
                d.name.startswith(mod.rsplit(".", 1)[0] + "._") for d in DECODERS
            ), f"no wire message classes found for {rec.name}"


def test_every_recorded_body_has_a_decoder(recordings: dict[str, H.Recording], samples) -> None:
    """Every binary wire frame a real client or server sent is parsed by some discovered decoder."""
    covered = {b for v in samples.values() for b in v}
    decs = [d for d in DECODERS if d.direct]
    missing = []
    for rec in recordings.values():
        for e in rec.exchanges:
            for b in (e.request, e.response):
                if not b or H.frame_layout(b) is None or b[:1] != b"\x01" or b in covered:
                    continue
                if not any(_round_trips(d, b) for d in decs):
                    missing.append(f"{rec.name} {e.method} {e.path}: {b[:8].hex()}… ({len(b)} B)")
    assert not missing, "wire frames no discovered decoder parses:\n" + "\n".join(sorted(set(missing))[:20])


def _round_trips(d: H.Decoder, b: bytes) -> bool:
    try:
        back = H.reencode(d.decode(b))
    except Exception:
        return False
    return back is None or back == b


@pytest.mark.parametrize("dec", DECODERS, ids=_dec_id)
def test_round_trip(dec: H.Decoder, samples: dict[str, list[bytes]]) -> None:
    got = samples.get(dec.name, [])
    if not got:
        pytest.skip("no recorded sample: a normal client scan never sends this message")
    for s in got:
        back = H.reencode(dec.decode(s))
        if back is None:
            pytest.skip(f"returns {type(dec.decode(s)).__name__}, which has no to_bytes: decode-only")
        assert back == s
        assert H.reencode(dec.decode(back)) == s


@pytest.mark.parametrize("dec", DECODERS, ids=_dec_id)
def test_structured_mutations(dec: H.Decoder, samples: dict[str, list[bytes]]) -> None:
    """Truncation at every length, extension, every bit flip, wrong version/id/type/count,
    lying length prefixes, identity / RFC 9496 bad encodings / unreduced scalars in 32-byte slots."""
    if not dec.direct:
        pytest.skip(f"from_bytes needs {dec.extra_params}; exercised through the endpoints below")
    tries = HE_DECODER_TRIES if ".he." in dec.name else DECODER_TRIES
    res = H.battery_decoder(dec, samples.get(dec.name, [])[:3], random.Random(7), budget_s=None,
                            max_tries=tries)
    assert res.tried == tries or not res.note, res.note
    assert res.bad == 0, "\n".join(res.failures)


_STEP = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 4096)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(0, 7)),
    st.tuples(st.just("set_byte"), st.integers(0, 8), st.integers(0, 255)),
    st.tuples(st.just("field_len"), st.integers(0, 8), st.integers(0, 3)),
    st.tuples(st.just("chunk"), st.integers(0, 8), st.integers(0, 4),
              st.sampled_from([H.IDENTITY, b"topbit", *H.RISTRETTO_BAD_ENCODINGS, *H.BAD_SCALARS])),
)


def _mutation(step: tuple) -> H.Mutation:
    kind = step[0]
    if kind == "extend":
        return H.Mutation(kind, (), step[1])
    if kind == "chunk":
        return H.Mutation(kind, (step[1], step[2]), step[3])
    return H.Mutation(kind, tuple(step[1:]))


@pytest.mark.parametrize("dec", [d for d in DECODERS if d.direct], ids=_dec_id)
@HYP
@given(data=st.data())
def test_hypothesis_stacked_mutations(dec: H.Decoder, samples, data: st.DataObject) -> None:
    """Up to three mutations stacked on a recorded sample (shrinks to a minimal failing input)."""
    got = samples.get(dec.name, [])
    if not got:
        pytest.skip("no recorded sample")
    s = data.draw(st.sampled_from(got[:4]))
    out = s
    for step in data.draw(st.lists(_STEP, min_size=1, max_size=3)):
        out = _mutation(step).apply(out)
    o = H.check_decoder(dec, out, s)
    assert o.ok, f"{o.kind}: {o.detail}"


@pytest.mark.parametrize("dec", [d for d in DECODERS if d.direct], ids=_dec_id)
@HYP
@given(blob=st.binary(max_size=600))
def test_hypothesis_random_bytes(dec: H.Decoder, blob: bytes) -> None:
    o = H.check_decoder(dec, blob)
    assert o.ok, f"{o.kind}: {o.detail}"


@pytest.mark.parametrize("dec", [d for d in DECODERS if d.direct], ids=_dec_id)
@HYP
@given(header=st.binary(min_size=4, max_size=4), rest=st.binary(max_size=300))
def test_hypothesis_valid_header_random_fields(dec: H.Decoder, samples, header: bytes, rest: bytes) -> None:
    """The sample's own header with random fields behind it gets past the version checks."""
    got = samples.get(dec.name, [])
    blob = (got[0][:4] if got else header) + rest
    o = H.check_decoder(dec, blob)
    assert o.ok, f"{o.kind}: {o.detail}"


# ------------------------------------------------------------------ endpoint handlers

def _endpoints(recordings: dict[str, H.Recording], name: str):
    rec = recordings[name]
    if not rec.in_process:
        pytest.skip(f"{name} answers only from its party processes: bad input reaches it over HTTP "
                    "(tests/test_limits.py, tests/test_api_schemathesis.py)")
    return rec, list(rec.endpoints())


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_endpoint_handlers_typed_errors(proto: str, recordings: dict[str, H.Recording]) -> None:
    """Mutated recorded requests into every endpoint handler; identity/non-canonical points in
    a point field must be rejected (never stored or answered with 2xx)."""
    rec, eps = _endpoints(recordings, proto)
    rng = random.Random(11)
    tries = ENDPOINT_TRIES.get(proto, DEFAULT_ENDPOINT_TRIES)
    problems: list[str] = []
    strict_tried = 0
    for ep in eps:
        res = H.battery_endpoint(rec, ep, rng, budget_s=None, max_tries=tries)
        strict_tried += sum(1 for f in res.failures if "accepted" in f)
        assert res.tried > 0
        problems += [f"{res.target}: {f}" for f in res.failures]
    assert not problems, "\n".join(problems[:30])


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_point_fields_rejected_by_server(proto: str, recordings: dict[str, H.Recording]) -> None:
    """The identity, bit 255 set and every RFC 9496 bad encoding, at every offset of every
    recorded request (nested frames included, e.g. each voucher in a batch) where a decoded
    message holds a ristretto255 point: the handler must refuse it (typed 4xx, nothing stored)."""
    rec, eps = _endpoints(recordings, proto)
    pmap = rec.points()
    checked = 0
    for ep in eps:
        for s in rec.requests(ep.method, ep.path)[:2]:
            for m in H.point_mutations(pmap.offsets(s)):
                o = H.check_endpoint(ep, m.apply(s), strict=True)
                checked += 1
                assert o.ok, f"{ep.method} {ep.path} {m}: {o.kind} {o.detail}"
    if not checked:
        pytest.skip(f"{proto}: no request carries ristretto255 points")


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_point_locator_finds_points_when_present(proto: str, recordings: dict[str, H.Recording]) -> None:
    """Guard against a vacuous pass above: a private protocol's traffic that contains valid
    points must have them located (found by brute force over every 32-byte window)."""
    import rbcl

    rec = recordings[proto]
    pmap = rec.points()
    for e in rec.exchanges:
        for body in (e.request, e.response):
            if not body or len(body) > 20000:
                continue
            located = set(pmap.offsets(body))
            for off in located:
                assert rbcl.crypto_core_ristretto255_is_valid_point(body[off : off + 32])
    if rec.protocol.private and any(pmap.paths.values()):
        assert any(pmap.offsets(e.request) or pmap.offsets(e.response) for e in rec.exchanges)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_get_endpoints_tolerate_junk_headers(proto: str, recordings: dict[str, H.Recording]) -> None:
    from blindmatch.protocol import Request

    _, eps = _endpoints(recordings, proto)
    for ep in eps:
        if ep.method != "GET":
            continue
        for hdr in ({"if-none-match": "\x00" * 300}, {"if-none-match": '"' + "f" * 64 + '"'},
                    {"if-none-match": "*"}, {"range": "bytes=-1"}):
            try:
                rep = ep.handler(Request(b"", hdr, "junk"))
            except BlindmatchError:
                continue
            assert rep.status < 500


# ------------------------------------------------------------------ client halves

@pytest.mark.parametrize("proto", PROTOCOLS)
def test_client_rejects_mutated_responses(proto: str, recordings: dict[str, H.Recording]) -> None:
    """A hostile server's mutated answers give the real client a typed error or a result, never a crash."""
    rec = recordings[proto]
    if not rec.in_process:
        pytest.skip(f"{proto}: a real exchange needs its party processes; its reply decoders are in "
                    "the decoder batteries above, and tests/test_mpc_pinning.py plays a hostile party 0")
    targets = H.client_targets(rec)
    assert targets
    rng = random.Random(5)
    problems = []
    tries = CLIENT_TRIES.get(proto, DEFAULT_CLIENT_TRIES)
    for t in targets:
        res = H.battery_client(rec, t, rng, budget_s=None, max_tries=tries)
        assert res.tried > 0, res.note
        problems += [f"{res.target}: {f}" for f in res.failures]
    assert not problems, "\n".join(problems[:30])


# ------------------------------------------------------------------ file-level decoders

@HYP
@given(data=st.data())
def test_setdir_open_mutated(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    """A damaged set dir is a typed error naming the file (or opens to a different, consistent set)."""
    from blindmatch.protocol import get_algo
    from blindmatch.server import SetDir

    base = tmp_path_factory.mktemp("sd")
    good = SetDir.build(base / "good", get_algo("pdq"), random_set(8).values(), ["t"])
    bad = base / "bad"
    shutil.copytree(good.path, bad, dirs_exist_ok=True)
    which = data.draw(st.sampled_from(["set.json", "hashes.bin"]))
    raw = (bad / which).read_bytes()
    step = data.draw(_STEP)
    (bad / which).write_bytes(_mutation(step).apply(raw))
    try:
        sd = SetDir.open(bad)
    except BlindmatchError as e:
        # the damaged file is named (a count edit in set.json may surface as hashes.bin's size)
        assert "set.json" in str(e) or "hashes.bin" in str(e), str(e)
        return
    except Exception as e:
        pytest.fail(f"{which} {step[:2]}: {type(e).__name__}: {e}")
    # opened: it must be self-consistent (digest re-checks) — never a silently empty set
    assert len(sd.hashes) > 0
    assert sd.digest == json.loads((bad / "set.json").read_text())["digest"]


@HYP
@given(blob=st.binary(max_size=3000), data=st.data())
def test_decode_image_bytes(images, blob: bytes, data: st.DataObject) -> None:
    from blindmatch.client import decode_image, hash_bytes

    from .conftest import encode

    fmt = data.draw(st.sampled_from(["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"]))
    base = encode(images[0].resize((48, 40)), fmt)
    mode = data.draw(st.sampled_from(["random", "flip", "truncate", "splice"]))
    if mode == "random":
        buf = blob
    elif mode == "flip":
        b = bytearray(base)
        for _ in range(data.draw(st.integers(1, 8))):
            b[data.draw(st.integers(0, len(b) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        buf = bytes(b)
    elif mode == "truncate":
        buf = base[: data.draw(st.integers(0, len(base)))]
    else:
        at = data.draw(st.integers(0, len(base)))
        buf = base[:at] + blob + base[at:]
    try:
        img = decode_image(buf, "fuzz", max_pixels=4_000_000)
    except BlindmatchError:
        return
    assert img.mode == "RGB" and img.size[0] * img.size[1] <= 4_000_000
    hash_bytes(buf, "pdq") if img.size[0] * img.size[1] <= 1_000_000 else None


@HYP
@given(text=st.text(max_size=400), data=st.data())
def test_cli_hash_list_reader(
    tmp_path_factory: pytest.TempPathFactory, text: str, data: st.DataObject
) -> None:
    from blindmatch.cli import read_hash_file

    p = tmp_path_factory.mktemp("hl") / "list.txt"
    good = "\n".join(v.hex for v in random_set(3).values())
    use = data.draw(st.sampled_from(["text", "splice", "csv", "bytes"]))
    if use == "text":
        p.write_text(text)
    elif use == "splice":
        p.write_text(good[:100] + text + good[100:])
    elif use == "csv":
        p.write_text("id,hash\n" + "\n".join(f"{i},{ln}" for i, ln in enumerate((good + text).splitlines())))
    else:
        p.write_bytes(data.draw(st.binary(max_size=300)))
    skip = data.draw(st.booleans())
    try:
        vals, errs = read_hash_file(p, "pdq", skip)
    except BlindmatchError:
        return
    except UnicodeDecodeError:
        return  # the CLI turns this into BadHashError naming the file (db_build)
    assert all(len(v.raw) == 32 for v in vals)
    assert skip or not errs
