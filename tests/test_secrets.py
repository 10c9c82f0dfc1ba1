"""Secrets hygiene, generic over the registry.

- Every file a protocol writes through ``protocol.keyfile.write_secret`` (found by
  wrapping that function wherever a module imported it) is mode 0600, and a server
  or client refuses to load it once it is group- or world-accessible, naming the file;
  any other file in a state dir whose name says "key"/"secret" must be 0600 too.
- A server started at DEBUG log level (root logger and uvicorn), exercised through
  every protocol's real client, admin endpoints and error paths, never writes key
  bytes to its log (raw, hex, base64, or a 16-byte window of them); neither do the
  clients' logs.
- Secret comparisons are constant time: an AST scan of protocol/, server/, client/
  finds no ``==``/``!=`` on names that denote secrets (key, token, tag, mac, secret…)
  outside a short list of reviewed public-value comparisons.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import logging
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from blindmatch.protocol import REGISTRY, BlindmatchError, InsecureKeyFileError, Query, ServerHalf
from blindmatch.reliability import harness as H
from blindmatch.server import LiveServer, SetDir
from blindmatch.server.testing import free_port

from blindmatch.corpus import random_set

from . import _http
from .mpc_helpers import open_multi_process

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ which files are secret

@pytest.fixture()
def secret_log(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Wrap keyfile.write_secret in every module that imported it; collect the paths."""
    import blindmatch.protocol.keyfile as kf

    original = kf.write_secret
    written: list[Path] = []

    def recording(path: Path, data: bytes) -> None:
        written.append(Path(path))
        original(path, data)

    for mod in list(sys.modules.values()):
        if mod is not None and str(getattr(mod, "__name__", "")).startswith("blindmatch"):
            for name, val in list(vars(mod).items()):
                if val is original:
                    monkeypatch.setattr(mod, name, recording)
    return written


def _run_everything(tmp: Path) -> dict[str, tuple[Path, Path]]:
    """Open every protocol on a fresh state dir and run its client (which may create secrets)."""
    hs = random_set(32)
    out = {}
    for name, proto in sorted(REGISTRY.items()):
        state, cache = tmp / "state" / name, tmp / "cache" / name
        if proto.server_processes > 1:  # its real party processes write their keys under the set dir
            srv: ServerHalf = open_multi_process(proto, hs, tmp / name)
            state = tmp / name / "set" / "state" / name
        else:
            srv = proto.open_server(hs, state, dict(H.SERVER_OPTIONS.get(name, {})))
        try:
            client = proto.new_client(hs.algo, cache, H.client_options(name))
            client.scan(Query(hs.value(1), account="sec", associated_data=b"ad"), H.RecordingTransport(srv))
        finally:
            srv.close()
        out[name] = (state, cache)
    return out


def test_secret_files_are_0600_and_refused_when_readable(tmp_path: Path, secret_log: list[Path]) -> None:
    dirs = _run_everything(tmp_path)
    secrets_ = sorted(set(p for p in secret_log if p.exists()))
    if any(p.private for p in REGISTRY.values()):
        assert secrets_, "private protocols registered but none wrote a secret through keyfile.write_secret"
    for p in secrets_:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, f"{p} is {oct(p.stat().st_mode)}"
    # any other key-looking file must be 0600 as well (a secret written around keyfile,
    # or by a protocol's own server processes, which the in-process log cannot see)
    for name, (state, cache) in dirs.items():
        secret_name = re.compile(r"(key|secret|seed|\.sign$|\.kex$)", re.I)
        keyish = [
            p for p in [*state.rglob("*"), *cache.rglob("*")]
            if p.is_file() and secret_name.search(p.name) and "pub" not in p.name
        ]
        if REGISTRY[name].server_processes > 1:
            assert keyish, f"{name}: its party processes wrote no key file under {state}"
        for p in keyish:
            assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, f"{p} is {oct(p.stat().st_mode)}"
    hs = random_set(32)
    refused = 0
    for p in secrets_:
        owner = next(n for n, (s, c) in dirs.items() if p.is_relative_to(s) or p.is_relative_to(c))
        side = "server" if p.is_relative_to(dirs[owner][0]) else "client"
        for bad_mode in (0o640, 0o604):
            os.chmod(p, bad_mode)
            try:
                with pytest.raises(InsecureKeyFileError) as e:
                    proto = REGISTRY[owner]
                    if side == "server":
                        proto.open_server(hs, dirs[owner][0], dict(H.SERVER_OPTIONS.get(owner, {}))).close()
                    else:
                        srv = proto.open_server(hs, dirs[owner][0], dict(H.SERVER_OPTIONS.get(owner, {})))
                        try:
                            proto.new_client(hs.algo, dirs[owner][1], H.client_options(owner)).scan(
                                Query(hs.value(2), account="sec", associated_data=b"ad"),
                                H.RecordingTransport(srv))
                        finally:
                            srv.close()
                assert p.name in str(e.value)
                refused += 1
            finally:
                os.chmod(p, 0o600)
    assert refused == 2 * len(secrets_)


def test_live_server_refuses_to_start_with_a_readable_key(tmp_path: Path) -> None:
    from ._reliability import prepared

    src = prepared() / "set"
    keys = sorted(p.relative_to(src) for p in (src / "state").rglob("*.key"))
    if not keys:
        pytest.skip("no server-side key files")
    by_proto: dict[str, Path] = {}
    for k in keys:
        by_proto.setdefault(k.parts[1], k)
    for rel in by_proto.values():
        d = tmp_path / rel.parts[1]
        shutil.copytree(src, d)
        os.chmod(d / rel, 0o644)
        with pytest.raises(RuntimeError) as e:
            LiveServer(d, env=H.LIVE_ENV, startup_timeout=90).start()
        assert rel.name in str(e.value) and "insecure_key_file" in str(e.value).lower().replace(
            "insecurekeyfileerror", "insecure_key_file"), str(e.value)[-800:]


# ------------------------------------------------------------------ key bytes in debug logs

def _forms(secret: bytes) -> Iterator[bytes]:
    """Encodings a logger might use, for the whole secret and 16-byte windows of it."""
    windows = [secret] if len(secret) <= 48 else []
    step = max(16, len(secret) // 6)
    windows += [secret[i : i + 16] for i in range(0, max(1, len(secret) - 15), step)][:8]
    for w in windows:
        if len(w) < 12:
            continue
        yield w
        yield w.hex().encode()
        yield w.hex().upper().encode()
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            b = enc(w)
            yield b.rstrip(b"=")[: max(16, len(b) - 4)]


def _start_debug_server(set_dir: Path, log: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    code = (
        "import logging, sys, uvicorn\n"
        "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,"
        " format='%(asctime)s %(name)s %(levelname)s %(message)s')\n"
        f"uvicorn.run('blindmatch.server.app:app_from_env', factory=True, host='127.0.0.1', port={port},"
        " log_level='debug', access_log=True)\n"
    )
    full_env = {**os.environ, **env, "BLINDMATCH_DB": str(set_dir), "PYTHONASYNCIODEBUG": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=full_env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text(errors="replace")[-2000:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if _http.get(url + "/healthz").status_code == 200:
                    return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("debug server did not start")


@pytest.mark.timeout(600)
def test_debug_logs_contain_no_key_material(tmp_path: Path, secret_log: list[Path]) -> None:
    from blindmatch.client import HttpTransport

    from ._reliability import prepared

    set_dir = tmp_path / "set"
    shutil.copytree(prepared() / "set", set_dir)
    hs = SetDir.open(set_dir).hashes
    token = "adm1n-" + os.urandom(18).hex()
    log = tmp_path / "server.log"
    env = {**H.LIVE_ENV, "BLINDMATCH_ADMIN_TOKEN": token, "BLINDMATCH_RATE_PER_SECOND": "100000",
           "BLINDMATCH_RATE_BURST": "100000"}
    client_log = tmp_path / "client.log"
    handler = logging.FileHandler(client_log)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    proc, url = _start_debug_server(set_dir, log, env)
    try:
        for name, proto in sorted(REGISTRY.items()):
            for opts in ({}, {"mode": "server-learns", "allow_server_learns": True}):
                try:
                    cache = tmp_path / "cache" / name
                    client = proto.new_client(hs.algo, cache, H.client_options(name, opts))
                except BlindmatchError:
                    continue
                tr = HttpTransport(url, name, client_id=f"log-{name}")
                for q in H.queries(hs, 2, 1, seed=5, account="log-acct"):  # 2 members: tpsi reveals at t=2
                    t0 = time.monotonic()
                    with contextlib.suppress(BlindmatchError):
                        client.scan(q, tr)
                    if time.monotonic() - t0 > 2.0:
                        break  # HE: one query per mode covers its code paths; each takes seconds
                tr.close()
            for ep_path in ("", "x"):  # error paths: bad bodies to every POST route
                _http.post(f"{url}/v1/{name}/{ep_path}", content=b"\x01\x02junk")
        recs = H.load_prepared(prepared(), None)[1]
        for name, rec in recs.items():
            for ep in rec.endpoints():
                hdrs = {"authorization": f"Bearer {token}", "x-blindmatch-account": "log-acct"}
                if ep.method == "POST":
                    _http.post(f"{url}/v1/{name}/{ep.path}", content=b"log-acct" if ep.admin else b"\x01junk",
                               headers=hdrs, timeout=120)
                else:
                    _http.get(f"{url}/v1/{name}/{ep.path}", headers=hdrs, timeout=120)
            rec.close()
        time.sleep(1.5)  # background work (tpsi reveals) logs too
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    text = log.read_bytes() + b"\n" + client_log.read_bytes()
    assert b"DEBUG" in text, "the server did not log at debug level; the test would prove nothing"
    secrets_: dict[str, bytes] = {"admin token": token.encode()}
    for p in (set_dir / "state").rglob("*"):
        if p.is_file() and (p.suffix == ".key" or "secret" in p.name):
            secrets_[str(p.relative_to(set_dir))] = p.read_bytes()
    for p in secret_log:
        if p.exists():
            secrets_[str(p)] = p.read_bytes()
    assert len(secrets_) > 1
    leaks = [f"{label}: {form[:24]!r}"
             for label, sec in secrets_.items() for form in _forms(sec) if form in text]
    assert not leaks, "key material in logs:\n" + "\n".join(leaks[:20])


# ------------------------------------------------------------------ constant-time comparisons

_SECRET = re.compile(
    r"(^|_)(keys?|token|tag|mac|hmac|secret|password|passwd|sig|signature|alpha|sk|seed)(_|$)", re.I)
_PUBLICISH = re.compile(
    r"(public|pub$|^pub|pinned|_id$|name|path|file|count|size|type|kind|mode|algo|etag)", re.I)
# Reviewed comparisons of *public* values whose names look secret (file, source text, why).
_REVIEWED = {
    ("protocol/oprf/_store.py", "manifest.signing_key != signing_pub"):
        "Manifest.signing_key is the public Ed25519 verification key",
    ("protocol/oprf/_protocol.py", "pin.read_bytes() != m.signing_key"):
        "pinned public verification key (trust on first use)",
    ("protocol/oprf/_protocol.py", "self._tofu_key != m.signing_key"):
        "pinned public verification key (trust on first use)",
}


def _ident(n: ast.AST) -> str | None:
    if isinstance(n, ast.Name):
        return n.id
    if isinstance(n, ast.Attribute):
        return n.attr
    if isinstance(n, ast.Subscript):
        return _ident(n.value)
    return None


def _trivial(n: ast.AST) -> bool:
    if isinstance(n, ast.Constant):
        v = n.value
        return v is None or isinstance(v, int | float | bool) or (isinstance(v, str | bytes) and len(v) < 4)
    return isinstance(n, ast.Call) and _ident(n.func) in ("len", "type", "isinstance", "int")


def secret_comparisons(roots: list[Path]) -> list[tuple[str, int, str]]:
    out = []
    for root in roots:
        for f in sorted(root.rglob("*.py")):
            src = f.read_text()
            lines = src.splitlines()
            for node in ast.walk(ast.parse(src)):
                if not isinstance(node, ast.Compare):
                    continue
                if not any(isinstance(o, ast.Eq | ast.NotEq) for o in node.ops):
                    continue
                operands = [node.left, *node.comparators]
                if any(_trivial(o) for o in operands):
                    continue
                names = [n for n in map(_ident, operands) if n]
                if any(_SECRET.search(n) and not _PUBLICISH.search(n) for n in names):
                    rel = f.relative_to(ROOT) if f.is_relative_to(ROOT) else f
                    out.append((str(rel), node.lineno, lines[node.lineno - 1].strip()))
    return out


def test_secret_comparisons_are_constant_time() -> None:
    found = secret_comparisons([ROOT / "protocol", ROOT / "server", ROOT / "client"])
    bad = [f"{f}:{n}: {src}" for f, n, src in found
           if not any(f == rf and text in src for rf, text in _REVIEWED)]
    assert not bad, "use hmac.compare_digest (or hazmat.ristretto.ct_equal) for secrets:\n" + "\n".join(bad)


def test_scanner_catches_a_planted_comparison(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text("def f(mac, expected_tag, key):\n    return mac == expected_tag\n"
                                       "def g(a, b):\n    return len(a) == 32 and a == b\n")
    found = secret_comparisons([tmp_path])
    assert [(Path(f).name, n) for f, n, _ in found] == [("probe.py", 2)]


def test_admin_token_compared_with_compare_digest() -> None:
    tree = ast.parse((ROOT / "server" / "app.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _ident(n.func) == "compare_digest"]
    assert calls, "server/app.py must compare the admin token with hmac.compare_digest"
