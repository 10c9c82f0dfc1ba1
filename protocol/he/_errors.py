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


class UnknownKeysError(InputError):
    """The query names evaluation keys the server does not hold; resend them."""

    code = "unknown_keys"
    http_status = 409


class KeysRejectedError(DecodeError):
    """SEAL refused the uploaded evaluation keys (the server forgets them)."""

    code = "bad_keys"


class PsiSlotsError(DecodeError):
    """A server-learns reply claims more PSI slots than the server's parameters allow.

    Each slot the client serves can carry a bit of its hash to a malicious server, so
    the client refuses before any group operation.
    """

    code = "psi_slots_exceeded"


class WrongParametersError(InputError):
    """The query was made for another parameter set, hash algorithm or LSH layout."""

    code = "wrong_parameters"


class ModeNotAllowedError(InputError):
    code = "mode_not_allowed"


class UnknownSessionError(InputError):
    code = "unknown_session"


class NoiseBudgetError(CryptoError):
    """A result decrypts with no noise budget left: it would be silently wrong."""

    code = "noise_exhausted"


class WorkerMemoryError(LimitError):
    code = "he_worker_memory"


class WorkerError(BlindmatchError):
    code = "he_worker_failed"
    http_status = 503


class WorkerCrashedError(WorkerError):
    code = "he_worker_crashed"


class WorkerTimeoutError(WorkerError):
    code = "he_worker_timeout"
