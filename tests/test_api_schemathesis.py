"""schemathesis against the live OpenAPI schema on a real uvicorn server on loopback.

schemathesis 4.x: its lazy ``pytest.from_fixture`` loader breaks on pytest 9
(``Function._nodeid`` is gone), so operations are driven directly: the schema is
loaded from the live server, and each operation's Hypothesis strategy (positive
and negative generation) is run for up to 50 examples. Checks: no 5xx, and status
code, content type, headers and body conform to the schema. schemathesis'
``positive_data_acceptance`` is not used: a schema-valid random *binary* body is
meant to be rejected by the wire decoders (400), which the schema documents.
"""

from __future__ import annotations

import pytest
import schemathesis
from blindmatch.protocol import REGISTRY
from blindmatch.server import LiveServer, SetDir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from blindmatch.corpus import random_set

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 50
GROUPS = ["_core", *sorted(REGISTRY)]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("schema-set")
    hs = random_set(64)
    SetDir.build(d, hs.algo, hs.values(), ["schemathesis"])
    env = {"BLINDMATCH_RATE_PER_SECOND": "100000", "BLINDMATCH_RATE_BURST": "100000",
           "BLINDMATCH_ADMIN_TOKEN": "schemathesis-admin", "BLINDMATCH_TPSI_THRESHOLD": "2"}
    with LiveServer(d, env=env) as srv:
        yield srv


@pytest.fixture(scope="module")
def api(live: LiveServer):
    return schemathesis.openapi.from_url(live.url + "/openapi.json")


def _operations(api, group: str) -> list:
    ops = [r.ok() for r in api.get_all_operations()]
    if group == "_core":
        return [o for o in ops if not any(o.path.startswith(f"/v1/{p}/") for p in REGISTRY)]
    return [o for o in ops if o.path.startswith(f"/v1/{group}/")]


@pytest.mark.timeout(400)
@pytest.mark.parametrize("group", GROUPS)
def test_api_conforms(api, live: LiveServer, group: str) -> None:
    ops = _operations(api, group)
    if group != "_core" and not ops:
        pytest.skip(f"{group} is not served for a PDQ set")
    assert ops
    calls = {"n": 0, "codes": set()}
    for op in ops:
        strat = st.one_of(op.as_strategy(GenerationMode.POSITIVE), op.as_strategy(GenerationMode.NEGATIVE))

        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=strat)
        def run(case) -> None:
            r = case.call_and_validate(base_url=live.url, checks=CHECKS, timeout=60)
            calls["n"] += 1
            calls["codes"].add(r.status_code)

        run()
    print(group, len(ops), calls)
    assert calls["n"] >= len(ops)
    assert max(calls["codes"]) < 500
