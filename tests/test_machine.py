"""One machine record: the simulator, the benchmarks and the reliability run carry the same keys."""

from __future__ import annotations

import json

from blindmatch.bench import validate_results
from blindmatch.sim.report.schema import SCHEMA, validate

from blindmatch.machine import MACHINE_KEYS, machine_info


def test_record_has_the_documented_keys_read_from_this_machine() -> None:
    m = machine_info()
    assert tuple(m) == MACHINE_KEYS
    assert m["logical_cpus"] >= 1 and 1 <= m["usable_cpus"] <= m["logical_cpus"]
    assert m["libraries"]["numpy"] and m["libraries"]["python"] == m["python"]
    json.dumps(m)  # every output stores it as JSON


def test_every_output_requires_every_key() -> None:
    """Each output's validator rejects a record that lacks any one key."""
    assert SCHEMA["properties"]["machine"]["required"] == list(MACHINE_KEYS)
    for key in MACHINE_KEYS:
        m = machine_info()
        del m[key]
        assert any(f"machine.{key}" in p for p in validate_results({"machine": m})), key
        assert any(key in p for p in validate({"machine": m}, SCHEMA["properties"]["machine"])), key
