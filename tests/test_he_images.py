"""`he` on real perturbed images: a JPEG q50 copy matches, an unrelated image does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from blindmatch.client import hash_bytes
from blindmatch.protocol import HashSet, LocalTransport, Query, get_algo, get_protocol
from PIL import Image

from .conftest import encode


def test_jpeg_q50_copy_matches_only_with_fuzzy_he(images: list[Image.Image], tmp_path: Path) -> None:
    a = get_algo("pdq")
    originals = [hash_bytes(encode(img)).hash for img in images[:4]]
    rng = np.random.default_rng(11)
    filler = rng.integers(0, 256, size=200 * a.nbytes, dtype=np.uint8).tobytes()
    hs = HashSet.from_raw(a, b"".join(h.raw for h in originals) + filler)
    he = get_protocol("he")
    srv = he.open_server(hs, tmp_path / "he", {})
    oprf = get_protocol("oprf")
    osrv = oprf.open_server(hs, tmp_path / "oprf", {})
    try:
        client = he.new_client(a, tmp_path / "c", {})
        oclient = oprf.new_client(a, tmp_path / "oc", {})
        tr, otr = LocalTransport(srv), LocalTransport(osrv)
        exact_misses = 0
        for img, orig in zip(images[:4], originals, strict=True):
            q50 = hash_bytes(encode(img, "JPEG", quality=50))
            d = q50.hash.distance(orig)
            assert d <= 31
            assert client.scan(Query(q50.hash), tr).matched is True
            exact = oclient.scan(Query(q50.hash), otr).matched
            assert exact is (d == 0)
            exact_misses += d > 0
        assert exact_misses >= 1, "no JPEG q50 copy changed any bit; the test shows nothing"
        unrelated = hash_bytes(encode(images[7])).hash
        assert client.scan(Query(unrelated), tr).matched is False
    finally:
        srv.close()
        osrv.close()
