"""Display formats shared by the report, the summary and the console: one way to print each kind of number.

Why one place: the same rate must read the same in report.html, summary.md and
the terminal; a value that is missing prints as "—" only where the table says why.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec

__all__ = [
    "fmt_big",
    "fmt_bytes",
    "fmt_count",
    "fmt_count_log",
    "fmt_ms",
    "fmt_rate",
    "fmt_sci",
    "num",
    "sanitize",
]


def sanitize(o: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): sanitize(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [sanitize(v) for v in o]
    if hasattr(o, "item") and callable(o.item):  # numpy scalar
        return sanitize(o.item())
    return o


def num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(float(x)) else None


_P = ParamSpec("_P")


def _dash_when_missing(f: Callable[Concatenate[float, _P], str]) -> Callable[Concatenate[Any, _P], str]:
    """A formatter of finite numbers; anything else (None, NaN, infinity, text) prints as "—"."""

    @functools.wraps(f)
    def fmt(x: Any, /, *args: _P.args, **kwargs: _P.kwargs) -> str:
        v = num(x)
        return "—" if v is None else f(v, *args, **kwargs)

    return fmt


def fmt_rate(c: dict[str, Any] | None, ci: bool = True) -> str:
    if not c or c.get("n", 0) == 0 or c.get("rate") is None:
        return "—"
    lo, hi = c["wilson"]
    s = f"{100 * c['rate']:.1f}%"
    return f"{s} ({100 * lo:.1f}–{100 * hi:.1f})" if ci else s


@_dash_when_missing
def fmt_bytes(v: float) -> str:
    for unit, div in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if v >= div:
            return f"{v / div:.3g} {unit}"
    return f"{v:.0f} B"


@_dash_when_missing
def fmt_ms(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:.3g} s"
    return f"{v:.3g} ms"


@_dash_when_missing
def fmt_sci(v: float, digits: int = 2) -> str:
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e6:
        return f"{v:.{digits + 1}g}"
    e = math.floor(math.log10(abs(v)))
    return f"{v / 10**e:.{digits}g}×10^{e}"


def fmt_count_log(x: Any, log10: Any) -> str:
    """A count that may underflow: shown as a power of ten from its logarithm."""
    v, lg = num(x), num(log10)
    if v is not None and v > 1e-300:
        return fmt_count(v)
    if lg is not None:
        return f"10^{lg:.0f}"
    return "0" if v == 0 else "—"


@_dash_when_missing
def fmt_big(v: float) -> str:
    """Volumes and set sizes in words a policy reader uses: 10,000 / 1 million / 1 billion."""
    for word, div in (("trillion", 1e12), ("billion", 1e9), ("million", 1e6)):
        if v >= div:
            return f"{v / div:g} {word}"
    return f"{v:,.0f}"


@_dash_when_missing
def fmt_count(v: float) -> str:
    """Counts of events per day/year: tiny expectations are shown as powers of ten."""
    if v >= 1:
        return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
    return fmt_sci(v)


def fmt_estimate(ms: Any, basis: str, note: str) -> str:
    """A cost with its basis: '4.1 ms', '9.3 s * (extrapolated …)', '≥ 2 s (lower bound …)' or why not."""
    if num(ms) is None:
        return f"not estimated: {note}" if note else "not estimated"
    if basis in ("measured", "interpolated"):
        return fmt_ms(ms)
    if basis == "lower bound":
        return f"≥ {fmt_ms(ms)} ({note})"
    return f"{fmt_ms(ms)} * ({note})"


def fmt_cores(cores: Any, basis: str, note: str) -> str:
    """Cores with the basis of the CPU estimate behind them, or why there is no number."""
    if not isinstance(cores, int) or cores <= 0:
        return f"not estimated: {note}" if note else "not estimated"
    if basis == "lower bound":
        return f"≥ {cores} ({note})"
    return f"{cores} *" if basis == "extrapolated" else str(cores)


def fmt_recall(r: dict[str, Any] | None) -> str:
    """Recall with its 95% interval, e.g. '92% (88–95)'."""
    if not r or r.get("rate") is None:
        return "not measured"
    return f"{100 * r['rate']:.0f}% ({100 * r['low']:.0f}–{100 * r['high']:.0f})"
