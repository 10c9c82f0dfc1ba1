"""Simulator configuration: TOML layers merged over the packaged defaults.

Why layered TOML: a run must be reproducible from what is written in its output
folder. ``default.toml`` holds every key with a comment; ``--quick`` overlays
``quick.toml``; ``--config FILE`` overlays the user's file; command-line flags
(seed) come last. Unknown keys are rejected, so a typo never silently falls
back to a default. The merged result is stored in ``results.json``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from blindmatch.protocol import InputError

__all__ = ["FREE_TABLES", "SimConfigError", "config_digest", "load_config", "merge"]

# Tables whose keys are names chosen by the user (protocols, network profiles).
FREE_TABLES = {("protocols",), ("network", "profiles")}


class SimConfigError(InputError):
    """The simulator configuration is malformed or names an unknown key."""

    code = "bad_sim_config"


def _read_packaged(name: str) -> dict[str, Any]:
    text = resources.files("blindmatch.sim").joinpath(name).read_text(encoding="utf-8")
    return tomllib.loads(text)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SimConfigError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SimConfigError(f"{path}: not valid TOML ({e})") from None


def merge(base: dict[str, Any], over: dict[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    """Deep-merge ``over`` into a copy of ``base``; unknown keys are errors outside free tables."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        here = (*path, k)
        if k not in out:
            if path in FREE_TABLES or (len(path) == 2 and path[0] == "protocols"):
                out[k] = copy.deepcopy(v)
                continue
            raise SimConfigError(f"unknown configuration key {'.'.join(here)!r}")
        if isinstance(out[k], dict):
            if not isinstance(v, dict):
                raise SimConfigError(f"{'.'.join(here)} must be a table")
            out[k] = merge(out[k], v, here)
        else:
            if isinstance(v, dict):
                raise SimConfigError(f"{'.'.join(here)} must not be a table")
            out[k] = copy.deepcopy(v)
    return out


def _check(cfg: dict[str, Any]) -> None:
    c = cfg["corpus"]
    if int(c["known"]) < 2 or int(c["images"]) <= int(c["known"]):
        raise SimConfigError("corpus.images must exceed corpus.known, and known must be >= 2")
    sizes = [int(s) for s in cfg["database"]["sizes"]]
    if not sizes or sorted(sizes) != sizes or sizes[0] < 1:
        raise SimConfigError("database.sizes must be a non-empty increasing list")
    if int(cfg["accuracy"]["verify_set_size"]) not in sizes:
        raise SimConfigError("accuracy.verify_set_size must be one of database.sizes")
    for name, prof in cfg["network"]["profiles"].items():
        for key in ("rtt_ms", "down_mbps", "up_mbps", "jitter_ms"):
            if float(prof.get(key, -1)) < 0:
                raise SimConfigError(f"network.profiles.{name}.{key} missing or negative")
    if cfg["perturb"]["resolution"] not in ("full", "downscaled") or int(cfg["perturb"]["max_side"]) < 16:
        raise SimConfigError("perturb.resolution must be 'full' or 'downscaled' and perturb.max_side >= 16")
    if int(cfg["accuracy"]["verify_min"]) < 1:
        raise SimConfigError("accuracy.verify_min must be >= 1")
    if int(cfg["run"]["workers"]) < 0:
        raise SimConfigError("run.workers must be >= 0")


def load_config(
    path: Path | None = None,
    quick: bool = False,
    seed: int | None = None,
    perturb_resolution: str | None = None,
) -> dict[str, Any]:
    """The merged configuration for one run (command-line flags override the files)."""
    cfg = _read_packaged("default.toml")
    if quick:
        cfg = merge(cfg, _read_packaged("quick.toml"))
    if path is not None:
        cfg = merge(cfg, _read_file(Path(path)))
    if seed is not None:
        cfg["run"]["seed"] = int(seed)
    cfg["run"]["quick"] = bool(quick)
    if perturb_resolution is not None:
        cfg["perturb"]["resolution"] = perturb_resolution
    # the known part of the database must fit in the smallest set
    known = int(cfg["corpus"]["known"])
    if known > int(cfg["database"]["sizes"][0]):
        raise SimConfigError("corpus.known must not exceed the smallest database size")
    _check(cfg)
    return cfg


def config_digest(*parts: Any) -> str:
    """Stable digest of JSON-able parts (stage cache keys)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:24]
