"""The versioned schema of ``results.json`` and a small validator for it.

Why a schema: policy teams and other tools quote these numbers; a field that
silently changes meaning is worse than a crash. ``SCHEMA`` is a JSON Schema
(draft 2020-12 keywords ``type``, ``required``, ``properties``, ``items``,
``enum``, ``minimum``, ``additionalProperties``) and is also written next to
each run as ``results.schema.json``. The version follows semver: a new optional
field bumps the minor version, a renamed or re-defined field bumps the major.
Field meanings are documented in docs/simulation-report.md.
"""

from __future__ import annotations

from typing import Any

from blindmatch.machine import MACHINE_KEYS

from ..derive import DERIVED_KEYS

__all__ = ["SCHEMA", "SCHEMA_VERSION", "validate"]

SCHEMA_VERSION = "2.1"

_NUM = {"type": ["number", "null"]}
_RATE: dict[str, Any] = {
    "type": "object",
    "required": ["k", "n", "rate", "wilson", "clopper_pearson"],
    "properties": {
        "k": {"type": "integer", "minimum": 0},
        "n": {"type": "integer", "minimum": 0},
        "rate": _NUM,
        "wilson": {"type": "array", "items": {"type": "number"}},
        "clopper_pearson": {"type": "array", "items": {"type": "number"}},
    },
}
_BASES = ("measured", "interpolated", "extrapolated", "lower bound", "not estimated")
_CELL_KEYS: dict[str, Any] = {
    "protocol": {"type": "string"},
    "variant": {"type": "string"},
    "algo": {"type": "string"},
}
# Every per-protocol row starts with these keys; rows of one hash algorithm add "algo".
_ROW = ["protocol", "variant"]
_CELL = list(_CELL_KEYS)

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://blindmatch.invalid/schemas/sim-results-2.json",
    "title": "blindmatch simulation results",
    "type": "object",
    "required": [
        "schema",
        "schema_version",
        "seed",
        "config",
        "machine",
        "deterministic_digest",
        "corpus",
        "perturbations",
        "protocols",
        "database",
        "accuracy",
        "verification",
        "cost",
        *DERIVED_KEYS,
        "evasion",
        "stages",
    ],
    "properties": {
        "schema": {"enum": ["blindmatch-sim-results"]},
        "schema_version": {"type": "string"},
        "seed": {"type": "integer"},
        "quick": {"type": "boolean"},
        "config": {"type": "object"},
        "deterministic_digest": {"type": "string"},
        "machine": {
            "type": "object",
            "required": list(MACHINE_KEYS),
            "properties": {
                "cpu_model": {"type": "string"},
                "logical_cpus": {"type": ["integer", "null"]},
            },
        },
        "corpus": {
            "type": "object",
            "required": ["source", "images", "known", "unrelated", "distances"],
            "properties": {
                "source": {"enum": ["embedded", "dir"]},
                "images": {"type": "integer", "minimum": 1},
                "distances": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": [
                            "bits",
                            "pairs",
                            "mean",
                            "sd",
                            "binomial_mean",
                            "binomial_sd",
                            "histogram",
                            "beta_binomial",
                            "pair_rate_empirical",
                        ],
                        "properties": {
                            "histogram": {"type": "array", "items": {"type": "integer"}},
                            "pair_rate_empirical": _RATE,
                        },
                    },
                },
            },
        },
        "perturbations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "kind", "family", "label", "params", "everyday"],
            },
        },
        "protocols": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "name",
                    "learner",
                    "matching",
                    "private",
                    "leakage",
                    "variants",
                    "algos",
                ],
            },
        },
        "accuracy": {
            "type": "object",
            "required": ["fnmr", "fmr", "det", "histograms"],
            "properties": {
                "fnmr": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": [*_CELL, "perturbation", *_RATE["required"]],
                        "properties": {
                            **_CELL_KEYS,
                            **_RATE["properties"],
                            "perturbation": {"type": "string"},
                        },
                    },
                },
                "fmr": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": [*_CELL, "set_size", "k", "n", "rate", "wilson"],
                        "properties": {
                            **_CELL_KEYS,
                            **_RATE["properties"],
                            "set_size": {"type": "integer", "minimum": 1},
                        },
                    },
                },
                "det": {"type": "object"},
                "histograms": {"type": "object"},
            },
        },
        "verification": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    *_CELL,
                    "decision",
                    "verified",
                    "verdict_source",
                    "local",
                ],
                "properties": {
                    **_CELL_KEYS,
                    "verified": {"type": "boolean"},
                    "verdict_source": {"enum": ["client", "server-log", "server-reveal", "unavailable"]},
                },
            },
        },
        "cost": {
            "type": "object",
            "required": ["algo", "cells", "hash_12mp", "hash_corpus_ms"],
            "properties": {
                "cells": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": [*_ROW, "transport", "set_size", "status"],
                        "properties": {
                            "transport": {"enum": ["local", "http"]},
                            "status": {"type": "string"},
                        },
                    },
                }
            },
        },
        "latency": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [*_ROW, "profile", "p50_ms", "p95_ms", "p99_ms"],
            },
        },
        "capacity": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    *_ROW,
                    "set_size",
                    "server_cpu_ms",
                    "extrapolated",
                    "basis",
                    "note",
                    "cores",
                ],
                "properties": {"basis": {"enum": list(_BASES)}},
            },
        },
        "population": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    *_ROW,
                    "set_size",
                    "pair_rate_upper95",
                    "fmr_upper95",
                    "bound_label",
                    "fmr_model",
                    "pair_rate_model",
                    "model_status",
                ],
            },
        },
        "accounts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    *_ROW,
                    "per_image_rate",
                    "images_per_year",
                    "threshold",
                    "binomial",
                    "poisson",
                    "accounts_flagged_per_year",
                ],
            },
        },
        "headline": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    *_ROW,
                    "private",
                    "learner",
                    "matching",
                    "fnmr_jpeg70",
                    "fnmr_everyday",
                    "fmr_measured",
                    "fmr_pair",
                    "fmr_pair_upper95",
                    "fmr_bound",
                    "fmr_bound_label",
                    "fmr_model",
                    "fmr_model_status",
                    "latency",
                    "bytes_per_image",
                    "one_time_download_bytes",
                    "server_cpu_ms",
                    "server_cpu_basis",
                    "server_cpu_note",
                    "cores_at",
                    "verified",
                ],
            },
        },
        "worked_examples": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    *_ROW,
                    "daily_images",
                    "set_size",
                    "cores",
                    "traffic_gb_per_day",
                    "innocent_flagged_per_day_bound",
                    "innocent_flagged_per_day_model",
                    "bound_label",
                    "cores_basis",
                    "cores_note",
                    "extrapolated",
                ],
            },
        },
        "false_matches": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "algo",
                    "rule",
                    "kind",
                    "radius",
                    "measured",
                    "upper95",
                    "pairs",
                    "label",
                    "calibration",
                    "model_pair_rate",
                    "pairs_needed",
                    "variants",
                ],
                "properties": {
                    "measured": _RATE,
                    "upper95": _NUM,
                    "model_pair_rate": _NUM,
                    "calibration": {
                        "type": "object",
                        "required": ["status", "reason", "cut", "window", "tail"],
                        "properties": {"status": {"enum": ["accepted", "rejected", "not checked"]}},
                    },
                },
            },
        },
        "frontier": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    *_ROW,
                    "recall_everyday",
                    "recall_real_copies",
                    "server_cpu_ms_at_1e6",
                    "server_cpu_basis",
                    "server_cpu_note",
                    "bytes_per_query",
                    "learner",
                    "adversary",
                    "trust",
                    "revealed",
                ],
                "properties": {"server_cpu_basis": {"enum": list(_BASES)}},
            },
        },
        "evasion": {"type": "object", "required": ["attempts", "config"]},
        "skipped": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["what", "why"],
                "properties": {"what": {"type": "string"}, "why": {"type": "string"}},
            },
        },
        "perturbation_pipeline": {
            "type": "object",
            "required": ["resolution", "max_side", "set_hashed_from"],
            "properties": {"resolution": {"enum": ["full", "downscaled"]}, "max_side": {"type": "integer"}},
        },
        "real_copies": {
            "type": ["object", "null"],
            "required": ["file", "pairs", "references", "labels", "cells"],
            "properties": {
                "pairs": {"type": "integer", "minimum": 1},
                "references": {"type": "integer", "minimum": 1},
                "labels": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
                "cells": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": [
                            *_CELL_KEYS,
                            "label",
                            "gated",
                            "median_distance_to_reference",
                            "recall",
                            *_RATE["required"],
                        ],
                        "properties": {**_CELL_KEYS, **_RATE["properties"], "label": {"type": "string"}},
                    },
                },
            },
        },
        "stages": {"type": "object"},
    },
}

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _type_ok(value: Any, t: str) -> bool:
    if t in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[t])


def validate(obj: Any, schema: dict[str, Any] = SCHEMA, path: str = "$") -> list[str]:
    """Errors (empty when valid), each naming the JSON path that failed."""
    errs: list[str] = []
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        if not any(_type_ok(obj, x) for x in types):
            return [f"{path}: expected {'/'.join(types)}, got {type(obj).__name__}"]
    if "enum" in schema and obj not in schema["enum"]:
        errs.append(f"{path}: {obj!r} not in {schema['enum']}")
    if "minimum" in schema and isinstance(obj, int | float) and obj < schema["minimum"]:
        errs.append(f"{path}: {obj} < minimum {schema['minimum']}")
    if isinstance(obj, dict):
        for key in schema.get("required", []):
            if key not in obj:
                errs.append(f"{path}: missing required field {key!r}")
        props = schema.get("properties", {})
        for key, sub in props.items():
            if key in obj:
                errs.extend(validate(obj[key], sub, f"{path}.{key}"))
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, val in obj.items():
                if key not in props:
                    errs.extend(validate(val, extra, f"{path}.{key}"))
        elif extra is False:
            errs.extend(f"{path}: unexpected field {key!r}" for key in obj if key not in props)
    if isinstance(obj, list) and "items" in schema:
        for i, item in enumerate(obj):
            errs.extend(validate(item, schema["items"], f"{path}[{i}]"))
    return errs
