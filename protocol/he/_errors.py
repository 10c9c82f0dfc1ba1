"""Errors specific to the ``he`` protocol, as leaves of the one tree in ``errors.py``.

Kept beside the protocol (not in the shared ``errors.py``) because only ``he`` raises
them; each class subclasses the shared branch it belongs to, so the HTTP and CLI
edges map them without knowing they exist::

    DecodeError   ── KeysRejectedError       SEAL refused the evaluation keys
                  ── PsiSlotsError           a server-learns reply claims more PSI slots than allowed
    InputError    ── UnknownKeysError (409), WrongParametersError, ModeNotAllowedError,
                     UnknownSessionError
    CryptoError   ── NoiseBudgetError        a result ciphertext is past its noise budget
    LimitError    ── WorkerMemoryError       a worker hit its address-space cap
    BlindmatchError ── WorkerError (503) ── WorkerCrashedError, WorkerTimeoutError
"""

from __future__ import annotations

from ..errors import BlindmatchError, CryptoError, DecodeError, InputError, LimitError

__all__ = [
    "KeysRejectedError",
    "ModeNotAllowedError",
    "NoiseBudgetError",
    "PsiSlotsError",
    "UnknownKeysError",
    "UnknownSessionError",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerMemoryError",
    "WorkerTimeoutError",
    "WrongParametersError",
]


class UnknownKeysError(InputError, code="unknown_keys", http_status=409):
    """The query names evaluation keys the server does not hold; resend them."""


class KeysRejectedError(DecodeError, code="bad_keys"):
    """SEAL refused the uploaded evaluation keys (the server forgets them)."""


class PsiSlotsError(DecodeError, code="psi_slots_exceeded"):
    """A server-learns reply claims more PSI slots than the server's parameters allow.

    Each slot the client serves can carry a bit of its hash to a malicious server, so
    the client refuses before any group operation.
    """


class WrongParametersError(InputError, code="wrong_parameters"):
    """The query was made for another parameter set, hash algorithm or LSH layout."""


class ModeNotAllowedError(InputError, code="mode_not_allowed"):
    """The server does not offer the requested mode (server-learns, bucketed queries)."""


class UnknownSessionError(InputError, code="unknown_session"):
    """A server-learns reply names no pending session on this server."""


class NoiseBudgetError(CryptoError, code="noise_exhausted"):
    """A result decrypts with no noise budget left: it would be silently wrong."""


class WorkerMemoryError(LimitError, code="he_worker_memory"):
    """An isolated HE worker hit its address-space cap."""


class WorkerError(BlindmatchError, code="he_worker_failed", http_status=503):
    """The isolated HE worker could not produce a result; no verdict exists."""


class WorkerCrashedError(WorkerError, code="he_worker_crashed"):
    """The HE worker process died during an evaluation."""


class WorkerTimeoutError(WorkerError, code="he_worker_timeout"):
    """An HE evaluation ran past its time limit and its worker was stopped."""
