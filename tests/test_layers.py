"""The import rules docs/architecture.md states, checked against every module's imports.

Each package may import only the layers below it; ``server`` sees protocols only through
their public packages; raw libsodium and SEAL calls stay inside ``protocol/hazmat``.
"""

from __future__ import annotations

import ast
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


def test_server_uses_protocols_only_through_public_packages() -> None:
    bad = [
        f"{p.relative_to(ROOT)} imports {n}"
        for p in _files("server")
        for n in imports_of("server", p)
        if n.startswith("blindmatch.protocol") and (_is_private(n) or ".hazmat" in n)
    ]
    assert not bad, "\n".join(bad)


def test_raw_primitives_only_in_hazmat() -> None:
    bad = []
    for folder in set(FOLDERS) - set(RAW_PRIMITIVES_ALLOWED):
        for path in _files(folder):
            if path.is_relative_to(ROOT / "protocol" / "hazmat"):
                continue
            bad += [
                f"{path.relative_to(ROOT)} imports {n}"
                for n in imports_of(folder, path)
                if n.split(".")[0] in HAZMAT_ONLY
            ]
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
