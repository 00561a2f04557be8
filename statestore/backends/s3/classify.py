"""The one S3 error classifier: an ``S3Error`` (code, status, or no answer) -> what it means.

Shared by the S3 backend and ``statestore check``, whatever the transport.
"""

from __future__ import annotations

from enum import Enum

from ...errors import AccessDeniedError, BackendConfigError, BackendError, BackendUnavailableError
from .transport import NoAnswer, S3Error


class Kind(Enum):
    """What a failed S3 request means to the layer above."""

    UNAVAILABLE = "unavailable"  #: no answer, 5xx, throttling: try again later (retried first)
    DENIED = "denied"  #: the credentials are refused or may not do this
    NO_CREDENTIALS = "no credentials"  #: none were found: a set-up problem, reported as denied
    MISCONFIGURED = "misconfigured"  #: no such bucket, wrong region, bad endpoint: fix the settings
    CONDITION_FAILED = "condition failed"  #: If-Match / If-None-Match did not hold (412, 409)
    NOT_FOUND = "not found"  #: no such key (or version)
    NOT_MODIFIED = "not modified"  #: a conditional read: the object still has that ETag (304)
    UNSUPPORTED = "unsupported"  #: not implemented by the server (501: LocalStack, for If-Match on DeleteObject)
    OTHER = "other"


TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeoutException",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
    }
)
#: 429 is throttling (Too Many Requests): retried with backoff like 503 SlowDown.
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
CONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
        "UnrecognizedClientException",
    }
)
#: The credentials themselves are not accepted (rather than not allowed to do this).
BAD_CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "InvalidClientTokenId"}
)
CONFIG_CODES = frozenset(
    {
        "NoSuchBucket",
        "InvalidBucketName",
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraintException",
    }
)
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchVersion"})


def classify(error: S3Error) -> Kind:
    """What ``error`` means. Codes first (a server's code is more precise than its status), then status."""
    if error.no_answer is not None:
        if error.no_answer is NoAnswer.NO_CREDENTIALS:
            return Kind.NO_CREDENTIALS
        if error.no_answer is NoAnswer.CONFIG:
            return Kind.MISCONFIGURED
        return Kind.UNAVAILABLE
    code, status = error.code, error.status
    if code in CONDITION_CODES:
        return Kind.CONDITION_FAILED
    if code in NOT_FOUND_CODES:
        return Kind.NOT_FOUND
    if code in DENIED_CODES:
        return Kind.DENIED
    if code in CONFIG_CODES:
        return Kind.MISCONFIGURED
    if code in TRANSIENT_CODES:
        return Kind.UNAVAILABLE
    if status == 304:
        return Kind.NOT_MODIFIED
    if status in (409, 412):
        return Kind.CONDITION_FAILED
    if status in (401, 403):
        return Kind.DENIED
    if status == 301:
        return Kind.MISCONFIGURED
    if status in TRANSIENT_STATUS:
        return Kind.UNAVAILABLE
    if status == 404:
        return Kind.NOT_FOUND
    if code == "NotImplemented" or status == 501:
        return Kind.UNSUPPORTED
    return Kind.OTHER


def is_transient(error: BaseException) -> bool:
    """A failure worth sending again: no answer (but credentials and settings), 5xx, throttling."""
    return isinstance(error, S3Error) and classify(error) is Kind.UNAVAILABLE


def error_class(kind: Kind) -> type[BackendError]:
    """The ``BackendError`` subclass a failure of ``kind`` is raised as (condition and not-found are handled above)."""
    if kind is Kind.UNAVAILABLE:
        return BackendUnavailableError
    if kind in (Kind.DENIED, Kind.NO_CREDENTIALS):
        return AccessDeniedError
    if kind is Kind.MISCONFIGURED:
        return BackendConfigError
    return BackendError
