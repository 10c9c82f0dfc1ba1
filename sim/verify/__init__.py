"""Stage 5, verify: check the decision rules against the real protocol code, in process and over real HTTP."""
