"""One exception tree for the whole library; edges (HTTP, CLI) map it to codes.

Why one root: the FastAPI handler and the CLI each catch ``BlindmatchError`` once
and turn ``code`` into a 4xx body or an exit line. Cryptographic failures carry
no detail that would help an attacker (no "which byte", no "which proof").

::

    BlindmatchError
     ├── DecodeError (ValueError)            malformed bytes on the wire
     │    ├── UnknownVersionError            byte 0 is not a version we speak
     │    ├── WrongProtocolError             suite/protocol id mismatch
     │    ├── LengthError                    truncated or extra bytes
     │    ├── UnknownModeError               mpc: a query mode byte (learner, output) we do not know
     │    └── DeserializeError               RFC 9497: not a valid group element
     ├── InputError (ValueError)             a well-formed but unusable request
     │    ├── InvalidInputError              RFC 9497: input maps to identity
     │    ├── EmptySetError                  a set with no hashes
     │    ├── UnknownEpochError              key epoch not (or no longer) served
     │    ├── UnknownProtocolError           name not in the registry
     │    ├── BadHashError                   hex hash of the wrong length/alphabet
     │    ├── UnknownPartyError              mpc: a party index or peer that is not 0, 1, 2
     │    ├── MaliciousSharesError           mpc: client shares not bits, or copies disagree
     │    └── OptionError (+ParameterError)  unknown protocol option or a value outside its range
     │         ├── OptionTypeError (TypeError)  an option of the wrong type
     │         └── ProbeError                multi-probe: probe_bits out of range, float values missing
     ├── ImageError (ValueError)             an image file we refuse to hash
     │    ├── UnreadableImageError           corrupt, truncated, zero-byte, not an image
     │    └── ImageTooLargeError             decompression-bomb guard
     ├── CryptoError                         verification failed (no detail)
     │    ├── VerifyError                    RFC 9497: DLEQ proof rejected
     │    ├── InverseError                   RFC 9497: blind has no inverse
     │    ├── SignatureError                 manifest/upload signature rejected
     │    │    └── RollbackError             manifest epoch older than one already seen
     │    ├── PolicyError                    signed parameters below the client's floors
     │    └── DigestMismatchError            downloaded artefact != manifest digest
     ├── ForbiddenError (403)                caller not allowed to act for this account
     │    ├── AccountKeyMismatchError        account bound to another client key
     │    └── AccountNotEnrolledError        account has no client key enrolled
     ├── LimitError                          a configured limit was hit
     │    ├── BodyTooLargeError   (413)
     │    ├── BatchTooLargeError  (413)
     │    └── RateLimitedError    (429)
     ├── StoreError                          persistent state unusable
     │    ├── CorruptStoreError              set dir / key file damaged (names the file)
     │    ├── InsecureKeyFileError           key file group/world readable
     │    └── StorageUnavailableError (503)  write failed (disk full, I/O)
     ├── ParameterError                      HE/protocol parameters cannot run the circuit
     └── PartyError (503)                    mpc: the three-party computation could not run
          ├── PartyUnavailableError          a party is down or does not answer in time
          └── PartyProtocolError             a peer sent an out-of-order or unauthenticated frame

The ``he`` protocol adds leaves under these branches in ``he/_errors.py`` (keys,
sessions, noise budget, isolated-worker failures); they map at the edges the same way.
"""

from __future__ import annotations

__all__ = [
    "AccountKeyMismatchError",
    "AccountNotEnrolledError",
    "BadHashError",
    "BatchTooLargeError",
    "BlindmatchError",
    "BodyTooLargeError",
    "CorruptStoreError",
    "CryptoError",
    "DecodeError",
    "DeserializeError",
    "DigestMismatchError",
    "EmptySetError",
    "ForbiddenError",
    "ImageError",
    "ImageTooLargeError",
    "InputError",
    "InsecureKeyFileError",
    "InvalidInputError",
    "InverseError",
    "LengthError",
    "LimitError",
    "MaliciousSharesError",
    "OptionError",
    "OptionTypeError",
    "ParameterError",
    "PartyError",
    "PartyProtocolError",
    "PartyUnavailableError",
    "PolicyError",
    "ProbeError",
    "RateLimitedError",
    "RollbackError",
    "SignatureError",
    "StorageUnavailableError",
    "StoreError",
    "UnknownEpochError",
    "UnknownModeError",
    "UnknownPartyError",
    "UnknownProtocolError",
    "UnknownVersionError",
    "UnreadableImageError",
    "VerifyError",
    "WrongProtocolError",
]


class BlindmatchError(Exception):
    """Root of every error the library raises on purpose."""

    code: str = "error"
    http_status: int = 400

    def __init_subclass__(cls, *, code: str | None = None, http_status: int | None = None) -> None:
        """A subclass declares its code (and HTTP status, when not its parent's) in its header."""
        super().__init_subclass__()
        if code is not None:
            cls.code = code
        if http_status is not None:
            cls.http_status = http_status

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code


class DecodeError(BlindmatchError, ValueError, code="decode_error"):
    """Malformed bytes on the wire."""


class UnknownVersionError(DecodeError, code="unknown_version"):
    """Byte 0 is not a version we speak."""


class WrongProtocolError(DecodeError, code="wrong_protocol"):
    """The suite or protocol id is not the one expected."""


class LengthError(DecodeError, code="bad_length"):
    """Truncated or extra bytes."""


class UnknownModeError(DecodeError, code="unknown_mode"):
    """mpc: a query mode byte (learner, output) we do not know."""


class DeserializeError(DecodeError, code="deserialize_error"):
    """RFC 9497 §2.1: the bytes are not a canonical, non-identity element."""


class InputError(BlindmatchError, ValueError, code="bad_input"):
    """A well-formed but unusable request."""


class InvalidInputError(InputError, code="invalid_input"):
    """RFC 9497: the input hashes to the identity element."""


class EmptySetError(InputError, code="empty_set"):
    """A set with no hashes."""


class UnknownEpochError(InputError, code="unknown_epoch"):
    """Key epoch not (or no longer) served."""


class UnknownProtocolError(InputError, code="unknown_protocol", http_status=404):
    """Name not in the registry."""


class BadHashError(InputError, code="bad_hash"):
    """A hex hash of the wrong length or alphabet."""


class UnknownPartyError(InputError, code="unknown_party"):
    """mpc: a party index or peer that is not 0, 1, 2."""


class MaliciousSharesError(InputError, code="malicious_shares", http_status=422):
    """The parties refused a query: shared inputs are not bits or replicated copies differ."""


class ImageError(BlindmatchError, ValueError, code="bad_image"):
    """An image file we refuse to hash."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path


class UnreadableImageError(ImageError, code="unreadable_image"):
    """Corrupt, truncated, zero-byte, or not an image at all."""


class ImageTooLargeError(ImageError, code="image_too_large"):
    """More pixels than the decompression-bomb guard allows."""


class CryptoError(BlindmatchError, code="crypto_error"):
    """Verification failed (no detail)."""


class VerifyError(CryptoError, code="verify_error"):
    """RFC 9497: DLEQ proof rejected."""


class InverseError(CryptoError, code="inverse_error"):
    """RFC 9497: blind has no inverse."""


class SignatureError(CryptoError, code="bad_signature"):
    """Manifest/upload signature rejected."""


class RollbackError(SignatureError, code="rollback"):
    """Manifest epoch older than one already seen."""


class PolicyError(CryptoError, code="client_policy"):
    """Signed parameters below the client's floors."""


class ForbiddenError(BlindmatchError, code="forbidden", http_status=403):
    """Caller not allowed to act for this account."""


class AccountKeyMismatchError(ForbiddenError, code="account_key_mismatch"):
    """Account bound to another client key."""


class AccountNotEnrolledError(ForbiddenError, code="account_not_enrolled"):
    """Account has no client key enrolled."""


class DigestMismatchError(CryptoError, code="digest_mismatch"):
    """A downloaded artefact does not match the digest its manifest commits to."""


class LimitError(BlindmatchError, code="limit", http_status=413):
    """A configured limit was hit."""


class BodyTooLargeError(LimitError, code="body_too_large"):
    """A request body over the configured byte limit (checked before parsing)."""


class BatchTooLargeError(LimitError, code="batch_too_large"):
    """More queries or elements in one request than the server accepts."""


class RateLimitedError(LimitError, code="rate_limited", http_status=429):
    """Too many requests from this caller; ``retry_after`` says when to try again."""

    def __init__(self, retry_after: float, detail: str = "") -> None:
        super().__init__(detail or f"retry after {retry_after:.2f}s")
        self.retry_after = retry_after


class StoreError(BlindmatchError, code="store_error", http_status=500):
    """Persistent state unusable."""


class CorruptStoreError(StoreError, code="corrupt_store"):
    """A set directory or key file is damaged (the detail names the file)."""


class InsecureKeyFileError(StoreError, code="insecure_key_file"):
    """A key file is readable by its group or by others."""


class StorageUnavailableError(StoreError, code="storage_unavailable", http_status=503):
    """Write failed (disk full, I/O)."""


class ParameterError(BlindmatchError, code="bad_parameters"):
    """HE/protocol parameters cannot run the circuit."""


class PartyError(BlindmatchError, code="party_error", http_status=503):
    """The three-party computation could not complete; no verdict exists."""


class PartyUnavailableError(PartyError, code="party_unavailable"):
    """A party is down or does not answer in time."""


class PartyProtocolError(PartyError, code="party_protocol"):
    """A peer sent an out-of-order or unauthenticated frame."""


class OptionError(InputError, ParameterError, code="bad_option"):
    """A protocol option that is unknown or out of range (server or client options).

    Both an ``InputError`` (the caller asked for something unusable) and a
    ``ParameterError`` (protocol parameters), so code that caught either before
    the options became typed keeps working.
    """


class OptionTypeError(OptionError, TypeError, code="bad_option_type"):
    """A protocol option of the wrong type (e.g. a string where an integer belongs)."""


class ProbeError(OptionError, code="bad_probe"):
    """Multi-probe cannot run as asked: ``probe_bits`` outside 0..MAX_PROBE_BITS, or a
    query with ``probe_bits`` > 0 but without its hash's float values."""
