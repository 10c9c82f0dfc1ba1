"""One atheris fuzz process: ``python fuzz/fuzz_one.py FAMILY [libFuzzer flags] [corpus dirs]``.

blindmatch (and Pillow, for the image family) is imported under atheris'
coverage instrumentation; the family's recorded real messages are written as the
seed corpus. Run through fuzz/run.py, which bounds time and collects results.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["blindmatch", "PIL"]):
    pass


sys.path.insert(0, str(Path(__file__).resolve().parent))
from targets import build


def main() -> None:
    family = sys.argv[1]
    argv = [sys.argv[0], *sys.argv[2:]]
    target = build(family)
    seeds = Path(tempfile.mkdtemp(prefix=f"seeds-{family}-"))
    for i, s in enumerate(target.seeds):
        (seeds / f"seed{i:03d}").write_bytes(s)
    print(f"fuzz family {family}: {len(target.slots)} slots: "
          + "; ".join(label for label, _ in target.slots), flush=True)
    argv.append(str(seeds))
    atheris.Setup(argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
