"""Stage 7, derive: false-match bounds, cost estimates, population figures and the frontier.

Population figures start from the measured per-pair false-match bound; a tail
model is used beside it only where it passed its calibration check.
"""

from .derive import DERIVED_KEYS, derive, false_match_table, report_algo
from .falsematch import Calibration, calibrate, false_match_row, pairs_needed

__all__ = [
    "DERIVED_KEYS",
    "Calibration",
    "calibrate",
    "derive",
    "false_match_row",
    "false_match_table",
    "pairs_needed",
    "report_algo",
]
