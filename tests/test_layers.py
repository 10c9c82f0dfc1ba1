"""The import rules docs/architecture.md states, checked against every module's imports.

Each package may import only the layers below it; ``server`` sees protocols only through
their public packages; raw libsodium and SEAL calls, block ciphers (AES-CTR, AES-GCM) and
X25519 from ``cryptography`` stay inside ``protocol/hazmat``.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "protocol": "blindmatch.protocol",
    "client": "blindmatch.client",
    "server": "blindmatch.server",
    "sim": "blindmatch.sim",
    "bench": "blindmatch.bench",
    "reliability": "blindmatch.reliability",
}
# package -> blindmatch packages it must never import
FORBIDDEN = {
    "protocol": ("client", "server", "sim", "bench", "reliability", "corpus", "cli"),
    "client": ("server", "sim", "bench", "reliability", "cli"),
    "server": ("client", "sim", "bench", "reliability", "corpus", "cli"),
    "sim": ("bench", "reliability", "cli"),
    "bench": ("sim", "reliability", "cli"),
    "reliability": ("sim", "bench", "cli"),
}
HAZMAT_ONLY = ("rbcl", "tenseal")
# modules of ``cryptography`` whose misuse breaks a protocol silently (nonces, keystreams, key agreement)
HAZMAT_ONLY_MODULES = (
    "cryptography.hazmat.primitives.ciphers",
    "cryptography.hazmat.primitives.asymmetric.x25519",
)
# bench measures the raw primitives for its floors; the reliability harness forges malformed points
RAW_PRIMITIVES_ALLOWED = ("bench", "reliability")


def _module_name(folder: str, path: Path) -> str:
    rel = path.relative_to(ROOT / folder).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([FOLDERS[folder], *parts])


def imports_of(folder: str, path: Path) -> list[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    mod = _module_name(folder, path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    return imports_in(path.read_text(), package)


def imports_in(source: str, package: str) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.append(name)
            out += [f"{name}.{a.name}" for a in node.names]
    return out


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _is_private(name: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in name.split(".")[2:])


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_layers_import_only_downwards(folder: str) -> None:
    bad = []
    for path in _files(folder):
        for name in imports_of(folder, path):
            parts = name.split(".")
            if parts[0] == "blindmatch" and len(parts) > 1 and parts[1] in FORBIDDEN[folder]:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_every_module_imports(folder: str) -> None:
    """No module names a sibling that no longer exists (a bench script once imported a removed
    ``bench.machine`` and failed only when run by hand)."""
    for path in _files(folder):
        if path.name != "__main__.py":  # an entry point runs when imported
            importlib.import_module(_module_name(folder, path))


def test_server_uses_protocols_only_through_public_packages() -> None:
    bad = [
        f"{p.relative_to(ROOT)} imports {n}"
        for p in _files("server")
        for n in imports_of("server", p)
        if n.startswith("blindmatch.protocol") and (_is_private(n) or ".hazmat" in n)
    ]
    assert not bad, "\n".join(bad)


def _is_raw_primitive(name: str) -> bool:
    return name.split(".")[0] in HAZMAT_ONLY or any(
        name == m or name.startswith(m + ".") for m in HAZMAT_ONLY_MODULES
    )


def _raw_primitive_imports() -> list[str]:
    bad = []
    for folder in set(FOLDERS) - set(RAW_PRIMITIVES_ALLOWED):
        for path in _files(folder):
            if path.is_relative_to(ROOT / "protocol" / "hazmat"):
                continue
            bad += [
                f"{path.relative_to(ROOT)} imports {n}"
                for n in imports_of(folder, path)
                if _is_raw_primitive(n)
            ]
    return bad


def test_raw_primitives_only_in_hazmat() -> None:
    bad = _raw_primitive_imports()
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_violation() -> None:
    """The rules are only as good as the import reader: feed it known violations."""
    src = "from ...server import app\nimport rbcl\nfrom .._gcs import build_gcs\nfrom . import _store\n"
    names = imports_in(src, "blindmatch.protocol.oprf")
    assert "blindmatch.server.app" in names
    assert "rbcl" in names
    assert "blindmatch.protocol._gcs.build_gcs" in names
    assert "blindmatch.protocol.oprf._store" in names
    assert _is_private("blindmatch.protocol.oprf._store")
    assert not _is_private("blindmatch.protocol.oprf")


def test_the_raw_primitive_rule_sees_cryptography_ciphers_and_x25519() -> None:
    src = (
        "from cryptography.hazmat.primitives.ciphers import Cipher\n"
        "from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n"
        "from cryptography.hazmat.primitives.asymmetric import x25519\n"
        "from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey\n"
        "from cryptography.hazmat.primitives.kdf.hkdf import HKDF\n"
    )
    flagged = {n for n in imports_in(src, "blindmatch.protocol.mpc") if _is_raw_primitive(n)}
    assert flagged == {
        "cryptography.hazmat.primitives.ciphers",
        "cryptography.hazmat.primitives.ciphers.Cipher",
        "cryptography.hazmat.primitives.ciphers.aead",
        "cryptography.hazmat.primitives.ciphers.aead.AESGCM",
        "cryptography.hazmat.primitives.asymmetric.x25519",
    }
