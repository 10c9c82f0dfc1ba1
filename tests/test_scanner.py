"""The client-side ``Scanner`` against a real uvicorn server on loopback, and docs/api.md.

One server (plain, oprf, tpsi) is shared by the module; the tests only add
vouchers under their own accounts, never change what others read. The doc's
example is run verbatim and its route table is compared with the app's routes,
so the page cannot drift from the code.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from blindmatch.client import (
    HashedImage,
    HttpTransport,
    ScanItem,
    Scanner,
    ServerUnreachableError,
    hash_bytes,
    hash_file,
)
from blindmatch.protocol import (
    REGISTRY,
    BadHashError,
    HashSet,
    InputError,
    LocalTransport,
    OptionError,
    SignatureError,
    Transport,
    TransportReply,
    UnknownProtocolError,
    UnreadableImageError,
    get_algo,
)
from blindmatch.protocol.oprf import describe_state
from blindmatch.server import LiveServer, SetDir, Settings, create_app, free_port
from PIL import Image

from .conftest import encode
from .sim_test_protocols import RevealPlain, registered

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
ROUTE_ROW = re.compile(
    r"\| `(GET|POST)` \| `(/v1/[a-z0-9_-]+/[a-z0-9_/-]+)` \| (\d+) \|([^|]*)\|([^|]*)\|"
)
ENV = {
    "BLINDMATCH_PROTOCOLS": "plain,oprf,tpsi",
    "BLINDMATCH_TPSI_THRESHOLD": "3",
    "BLINDMATCH_RATE_PER_SECOND": "1e9",
    "BLINDMATCH_RATE_BURST": "1e9",
}


class CountingTransport(Transport):
    """Passes every request to a real transport and records (method, path)."""

    def __init__(self, inner: Transport) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[str, str]] = []

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> TransportReply:
        self.calls.append((method, path))
        rep = self.inner.request(method, path, body, headers)
        self.bytes_up, self.bytes_down = self.inner.bytes_up, self.inner.bytes_down
        return rep

    def count(self, method: str, path: str) -> int:
        return self.calls.count((method, path))


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory, images: list[Image.Image]) -> list[Path]:
    """Four images whose PDQ hashes are the set; the conftest's other four are not in it."""
    d = tmp_path_factory.mktemp("known")
    paths = [d / f"k{i}.png" for i in range(4)]
    for p, img in zip(paths, images[:4], strict=True):
        p.write_bytes(encode(img))
    return paths


@pytest.fixture(scope="module")
def set_dir(tmp_path_factory: pytest.TempPathFactory, known: list[Path]) -> SetDir:
    hashes = [hash_file(p).hash for p in known]
    return SetDir.build(tmp_path_factory.mktemp("set") / "set", hashes[0].algo, hashes, ["test"])


@pytest.fixture(scope="module")
def server(set_dir: SetDir) -> Iterator[LiveServer]:
    with LiveServer(set_dir.path, env=ENV) as srv:
        yield srv


@pytest.fixture(scope="module")
def others(tmp_path_factory: pytest.TempPathFactory, images: list[Image.Image]) -> list[Path]:
    d = tmp_path_factory.mktemp("others")
    paths = [d / f"o{i}.jpg" for i in range(4)]
    for p, img in zip(paths, images[4:], strict=True):
        p.write_bytes(encode(img, "JPEG", quality=90))
    return paths


def _python_block(after_heading: str) -> str:
    text = DOC.read_text()
    section = text[text.index(after_heading) :]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m, f"no python block after {after_heading!r}"
    return m.group(1)


def _text_block(after_heading: str, marker: str) -> str:
    section = DOC.read_text().split(after_heading, 1)[1]
    after = section.split(marker, 1)[1]
    m = re.search(r"```\n(.*?)```", after, re.S)
    assert m
    return m.group(1)


# ---- the documentation


def test_doc_example_runs_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    ns: dict[str, Any] = {"__name__": "docs_api_example"}
    exec(compile(_python_block("### A runnable example"), str(DOC), "exec"), ns)
    verdicts, more = ns["verdicts"], ns["more"]
    assert [v.matched for v in verdicts] == [True, False]
    assert all(v.ok for v in verdicts)
    assert more[0].matched is True and more[0].ok
    assert isinstance(more[1].error, UnreadableImageError) and more[1].matched is None
    assert ns["progress"] == [(1, 2), (2, 2)]
    printed = capsys.readouterr().out
    doc_printed = _text_block("### A runnable example", "It prints something like this:")

    def normal(s: str) -> list[str]:
        return [re.sub(r"\S*/(known\.png|holiday\.jpg)", r"DIR/\1", ln).rstrip() for ln in s.splitlines()]

    assert normal(printed) == normal(doc_printed)


def _doc_routes() -> set[tuple[str, str, int, bool, bool]]:
    rows = set()
    for line in DOC.read_text().splitlines():
        m = ROUTE_ROW.match(line)
        if m:
            method, path, cap, limited, admin = m.groups()
            rows.add((method, path, int(cap), limited.strip().startswith("yes"), admin.strip() == "yes"))
    return rows


def test_doc_route_table_matches_the_app(tmp_path: Path, known: list[Path]) -> None:
    hashes = [hash_file(p).hash for p in known]
    sd = SetDir.build(tmp_path / "set", hashes[0].algo, hashes, ["routes"])
    settings = Settings(db=sd.path)  # type: ignore[call-arg]
    app = create_app(settings)
    cap = settings.max_body_bytes
    try:
        served = {
            (ep.method, f"/v1/{name}/{ep.path}", min(ep.max_body, cap), ep.rate_limited, ep.admin)
            for name, srv in app.state.servers.items()
            for ep in srv.endpoints()
        }
        assert set(app.state.servers) == set(REGISTRY)
        assert _doc_routes() == served
        shared = {(m, r.path) for r in app.routes for m in getattr(r, "methods", ()) if m != "HEAD"}
        doc = DOC.read_text()
        for path in ("/healthz", "/v1/set", "/v1/protocols", "/v1/<protocol>/admin/verdicts"):
            assert f"`{path}`" in doc
            for name in app.state.servers:
                assert ("GET", path.replace("<protocol>", name)) in shared
        per_protocol = {p for _, p in shared if p.startswith("/v1/") and p.count("/") > 2}
        admin = {f"/v1/{n}/admin/verdicts" for n in app.state.servers}
        assert per_protocol == {p for _, p, *_ in served} | admin
    finally:
        for srv in app.state.servers.values():
            srv.close()


# ---- scanning


def test_verdicts_in_input_order_over_http(server: LiveServer, known: list[Path], others: list[Path]) -> None:
    inputs = [known[0], others[0], known[1], others[1]]
    with Scanner(server.url, "plain") as s:
        vs = s.scan(inputs)
    assert [v.index for v in vs] == [0, 1, 2, 3]
    assert [v.name for v in vs] == [str(p) for p in inputs]
    assert [v.matched for v in vs] == [True, False, True, False]
    assert vs[0].distance == 0 and vs[0].bytes_up > 0 and vs[0].hashed is not None
    assert vs[0].hashed.quality is not None and vs[0].hashed.quality >= 50


def test_batches_use_scan_many(server: LiveServer, known: list[Path], others: list[Path]) -> None:
    """Ten inputs in batches of four: three evaluate requests; one at a time: ten."""
    inputs = [*known, *others, known[0], others[0]]
    seen: dict[int, list[bool | None]] = {}
    for batch, requests in ((4, 3), (1, 10)):
        tr = CountingTransport(HttpTransport(server.url, "oprf"))
        with Scanner(tr, "oprf", batch_size=batch) as s:
            seen[batch] = [v.matched for v in s.scan(inputs)]
        assert tr.count("POST", "evaluate") == requests
        assert tr.count("GET", "manifest") == 1 and tr.count("GET", "filter") == 1
        tr.inner.close()  # type: ignore[attr-defined]
    assert seen[4] == seen[1] == [True] * 4 + [False] * 4 + [True, False]


def test_server_learns_protocol_batches_vouchers(
    server: LiveServer, set_dir: SetDir, known: list[Path], others: list[Path]
) -> None:
    tr = CountingTransport(HttpTransport(server.url, "tpsi", client_id="acct-batch"))
    pins = {"pinned_set_digest": set_dir.digest, "min_threshold": 3}  # the module server runs t = 3
    with Scanner(tr, "tpsi", options=pins, account="acct-batch", batch_size=8) as s:
        vs = s.scan([*known, *others])
    assert all(v.ok and v.matched is None for v in vs)
    assert tr.count("POST", "vouchers") == 1
    tr.inner.close()  # type: ignore[attr-defined]


def test_progress_callback(server: LiveServer, known: list[Path], others: list[Path]) -> None:
    calls: list[tuple[int, int | None]] = []
    inputs = [known[0], b"", others[0], known[1], b"\x00junk"]
    with Scanner(server.url, "plain", batch_size=2) as s:
        s.scan(inputs, progress=lambda d, t: calls.append((d, t)))
        assert calls == [(i, 5) for i in range(1, 6)]
        calls.clear()
        vs = list(s.iter_scan((p for p in inputs), progress=lambda d, t: calls.append((d, t))))
    assert calls == [(i, None) for i in range(1, 6)] and len(vs) == 5


def _odd_modes(img: Image.Image) -> dict[str, bytes]:
    rgb = img.convert("RGB")
    rng = np.random.default_rng(5)
    return {
        "cmyk.jpg": encode(rgb.convert("CMYK"), "JPEG"),
        "grey16.png": encode(Image.fromarray(rng.integers(0, 65535, (96, 96)).astype(np.uint16))),
        "float.tif": encode(Image.fromarray(rng.random((96, 96)).astype(np.float32)), "TIFF"),
        "la.png": encode(rgb.convert("LA")),
        "palette-alpha.png": encode(rgb.convert("P"), transparency=0),
        "bilevel.png": encode(rgb.convert("1")),
        "animated.gif": encode(rgb, "GIF", save_all=True, append_images=[rgb.rotate(90)]),
        "tiny.png": encode(Image.new("RGB", (1, 1), (200, 10, 10))),
    }


def test_bad_inputs_fail_alone(
    server: LiveServer, known: list[Path], images: list[Image.Image], tmp_path: Path
) -> None:
    good = known[2].read_bytes()
    odd = _odd_modes(images[2])
    broken = {
        "truncated.png": good[: len(good) // 3],
        "truncated.jpg": encode(images[2], "JPEG")[:300],
        "empty.png": b"",
        "text.png": b"definitely not an image",
    }
    items = [ScanItem(b, name) for name, b in {**odd, **broken}.items()]
    inputs: list[Any] = [known[0], *items, tmp_path / "missing.png", tmp_path, known[1]]
    with Scanner(server.url, "plain", batch_size=32, min_quality=0) as s:
        vs = s.scan(inputs)
        assert [v.index for v in vs] == list(range(len(inputs)))
        assert vs[0].matched is True and vs[-1].matched is True
        by_name = {v.name: v for v in vs}
        for name in odd:
            assert by_name[name].ok and isinstance(by_name[name].matched, bool), by_name[name].error
        failed = [by_name[n] for n in broken] + [vs[-3], vs[-2]]
        for v in failed:
            assert isinstance(v.error, UnreadableImageError) and v.matched is None and not v.results
            assert v.error.code == "unreadable_image"
        assert "truncated" in str(by_name["truncated.png"].error)
        assert "zero-byte" in str(by_name["empty.png"].error)
        with pytest.raises(UnreadableImageError):
            s.scan([known[0], b""], strict=True)


def test_empty_input_sends_nothing(server: LiveServer) -> None:
    tr = CountingTransport(HttpTransport(server.url, "oprf"))
    with Scanner(tr, "oprf") as s:
        assert s.scan([]) == []
        assert list(s.iter_scan(iter(()))) == []
    assert tr.calls == []
    tr.inner.close()  # type: ignore[attr-defined]


def test_flat_image_is_skipped_not_sent(server: LiveServer) -> None:
    tr = CountingTransport(HttpTransport(server.url, "plain"))
    flat = encode(Image.new("RGB", (200, 200), (90, 90, 90)))
    with Scanner(tr, "plain") as s:
        (v,) = s.scan([flat])
    assert v.ok and v.matched is False and v.skipped is not None and v.skipped.startswith("quality")
    assert v.results == () and v.bytes_up == 0 and tr.calls == []
    tr.inner.close()  # type: ignore[attr-defined]


def test_hashes_as_inputs(server: LiveServer, known: list[Path]) -> None:
    pdq = hash_file(known[0])
    with Scanner(server.url, "plain") as s:
        a, b, c = s.scan([pdq, pdq.hash, hash_file(known[0], "phash")])
        assert a.matched is True and b.matched is True
        assert isinstance(c.error, BadHashError)
        with pytest.raises(TypeError):
            s.scan([42])  # type: ignore[list-item]


def test_dihedral_finds_a_rotated_copy(server: LiveServer, images: list[Image.Image]) -> None:
    rotated = encode(images[1].rotate(90, expand=True))
    with Scanner(server.url, "plain") as s:
        (plain_v,) = s.scan([rotated])
    with Scanner(server.url, "plain", dihedral=True) as s:
        (dih_v,) = s.scan([rotated])
    assert plain_v.matched is False
    assert dih_v.matched is True and dih_v.distance is not None and len(dih_v.results) == 8


def test_associated_data_and_account_reach_the_protocol(known: list[Path], tmp_path: Path) -> None:
    """The query's associated data: the item's, else the scanner's, else the input's name.

    Read back from a server-learns test protocol that reveals an account's matching
    associated data, registered only for this test: the Scanner names no protocol.
    """
    proto = RevealPlain()
    hv = hash_file(known[0]).hash
    with registered(proto):
        srv = proto.open_server(HashSet.from_values(hv.algo, [hv]), tmp_path, {"threshold": 1})
        tr = LocalTransport(srv)
        with Scanner(tr, proto.name, account="acct-1", associated_data=b"scanner-ad") as s:
            vs = s.scan([ScanItem(hv, "n1", b"item-ad"), ScanItem(hv, "n2")])
        with Scanner(tr, proto.name, account="acct-2") as s:
            vs += s.scan([ScanItem(hv, "n3")])
    assert all(v.ok and v.matched is None for v in vs)
    assert [v.associated_data for v in srv.server_verdicts("acct-1")] == [b"item-ad", b"scanner-ad"]
    assert [v.associated_data for v in srv.server_verdicts("acct-2")] == [b"n3"]


# ---- pins, transports, failures


def _oprf_pins(set_dir: SetDir) -> dict[str, str]:
    state = describe_state(set_dir.state_dir("oprf"))
    epoch = next(e for e in state["epochs"] if e["epoch"] == state["current"])
    return {
        "pinned_signing_key": epoch["signing_key"],
        "pinned_root_digest": epoch["root_digest"],
        "pinned_set_digest": set_dir.digest,
    }


def test_pins_pass_through_to_the_protocol(server: LiveServer, set_dir: SetDir, known: list[Path]) -> None:
    pins = _oprf_pins(set_dir)
    with Scanner(server.url, "oprf", options=pins) as s:
        assert s.scan([known[0]])[0].matched is True
    for name in pins:
        wrong = {**pins, name: "00" * 32}
        with Scanner(server.url, "oprf", options=wrong) as s:
            (v,) = s.scan([known[0]])
            assert isinstance(v.error, SignatureError) and v.matched is None, name
            with pytest.raises(SignatureError):
                s.scan([known[0]], strict=True)
    bad_set = {"pinned_set_digest": "11" * 32}
    with Scanner(server.url, "tpsi", options=bad_set, account="acct-pins") as s:
        (v,) = s.scan([known[0]])
        assert isinstance(v.error, SignatureError)


def test_in_process_transport(known: list[Path], tmp_path: Path) -> None:
    """Any Transport works; one the caller passes in is not closed by the scanner."""
    hs = SetDir.build(tmp_path / "set", get_algo("pdq"), [hash_file(known[3]).hash], ["t"]).hashes
    srv = REGISTRY["oprf"].open_server(hs, tmp_path / "state")
    tr = LocalTransport(srv)
    try:
        with Scanner(tr, REGISTRY["oprf"], cache_dir=tmp_path / "cache") as s:
            assert [v.matched for v in s.scan([known[3], known[0]])] == [True, False]
        with Scanner(tr, "oprf") as s2:  # the transport still works after the first scanner closed
            assert s2.scan_one(known[3]).matched is True
    finally:
        srv.close()


def test_closed_scanner_refuses(server: LiveServer, known: list[Path]) -> None:
    with Scanner(server.url, "plain") as s:
        pass
    with pytest.raises(InputError):
        s.scan([known[0]])


def test_configuration_errors_raise_at_construction(server: LiveServer) -> None:
    with pytest.raises(UnknownProtocolError):
        Scanner(server.url, "no-such-protocol")
    with pytest.raises(InputError):
        Scanner(server.url, "plain", algo="sha256", dihedral=True)
    with pytest.raises(InputError):
        Scanner(server.url, "plain", batch_size=0)
    with pytest.raises(OptionError):
        Scanner(server.url, "oprf", options={"probe_bits": 99})
    with pytest.raises(OptionError):
        Scanner(server.url, "plain", options={"probe_bits": 1})  # plain takes no options


def test_refused_connection_is_a_typed_error_per_item(known: list[Path]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Scanner(url, "plain", batch_size=2, timeout=5.0) as s:
        vs = s.scan([known[0], known[1], b""])
        unreachable = ServerUnreachableError
        assert [type(v.error) for v in vs] == [unreachable, unreachable, UnreadableImageError]
        assert vs[0].error is not None and vs[0].error.code == "transport_error"
        with pytest.raises(ServerUnreachableError):
            s.scan([known[0]], strict=True)


@pytest.mark.timeout(60)
def test_silent_server_times_out(known: list[Path]) -> None:
    """A peer that accepts the connection and never answers: a timeout, not a hang."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)  # the kernel completes handshakes; nobody ever reads or writes
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with Scanner(url, "plain", timeout=1.0) as s:
            (v,) = s.scan([known[0]])
    assert isinstance(v.error, ServerUnreachableError)
    assert "Timeout" in v.error.detail


def test_hash_bytes_and_scanner_agree(server: LiveServer, known: list[Path]) -> None:
    data = known[0].read_bytes()
    with Scanner(server.url, "plain") as s:
        (v,) = s.scan([io.BytesIO(data).getvalue()])
    assert v.hashed == hash_bytes(data) and isinstance(v.hashed, HashedImage)


def test_cli_scan_batches_with_the_same_output(
    server: LiveServer, known: list[Path], others: list[Path]
) -> None:
    """`blindmatch scan --batch-size N` runs the Scanner in batches; the verdicts do not change."""
    q = known[0].parent.parent / "cli-queries"
    q.mkdir(exist_ok=True)
    for p in [known[0], others[0], known[1]]:
        (q / p.name).write_bytes(p.read_bytes())
    (q / "broken.png").write_bytes(b"\x89PNG broken")
    out = {}
    for batch in ("1", "3"):
        r = subprocess.run(
            [sys.executable, "-m", "blindmatch.cli", "scan", "--server", server.url, "--protocol", "oprf",
             "--batch-size", batch, "--cache-dir", str(q.parent / f"c{batch}"), str(q)],
            capture_output=True, text=True, timeout=300, check=False,
        )
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "broken.png" in r.stderr
        out[batch] = {Path(x["path"]).name: x["matched"] for x in map(json.loads, r.stdout.splitlines())}
    assert out["1"] == out["3"] == {known[0].name: True, others[0].name: False, known[1].name: True}
