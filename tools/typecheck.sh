#!/usr/bin/env bash
# mypy cannot follow setuptools' package-dir editable finder, so we give it a tree of
# symlinks that spells the real import names (blindmatch.protocol -> protocol/, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
root=.typecheck/blindmatch
rm -rf .typecheck && mkdir -p "$root"
for f in blindmatch/*.py; do ln -s "$PWD/$f" "$root/$(basename "$f")"; done
for pkg in protocol client server sim bench reliability; do ln -s "$PWD/$pkg" "$root/$pkg"; done
MYPYPATH=.typecheck exec "${MYPY:-.venv/bin/mypy}" -p blindmatch "$@"
