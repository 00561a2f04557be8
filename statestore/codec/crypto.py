"""Client-side envelope encryption of stored state (AES-256-GCM), and the secret policy for credentials.

``EncryptingCodec`` seals a state's plain JSON into a small JSON envelope::

    {"statestore_encrypted":"AES-256-GCM","version":1,"key_id":"3f1c...","nonce":"...","ciphertext":"..."}

so ``cat`` shows at once that the object is encrypted and under which key. The
associated data is the state's ``app/type/id``: an envelope copied to another
id, type or app does not decrypt. The key id is the first 8 bytes of the
SHA-256 of the key, in hex (``base64 -d <<<"$KEY" | sha256sum | cut -c1-16``);
the key itself never leaves this module -- not in a message, a log record or a
``repr``.

Keys: one *primary* key encrypts every new write; *old* keys still decrypt.
A state read under an old key, or still in plain JSON, comes back with
``reseal=True`` and the store rewrites it under the primary key on its next
write (``Store.reencrypt_states`` does that for all states of a type at once).
With ``require_encryption`` a state of an encrypted type stored as plain JSON
is refused instead (``UnencryptedStateError``): once every state is migrated,
plain JSON can only have been planted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, get_args

import orjson

from ..errors import DecryptionError, InvalidInputError, SecretPolicyError, UnencryptedStateError
from ..keys.paths import StateKey
from ..keys.statetype import StateType
from .jsonio import Codec, Opened, loads
from .secrets import find_raw_secrets

if TYPE_CHECKING:  # cryptography is imported when a key is given: importing statestore stays light
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

logger = logging.getLogger(__name__)

MARKER = "statestore_encrypted"
ALGORITHM = "AES-256-GCM"
VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
ENVELOPE_FIELDS = frozenset({MARKER, "version", "key_id", "nonce", "ciphertext"})
SecretPolicy = Literal["refuse", "allow"]
SECRET_POLICIES: tuple[SecretPolicy, ...] = get_args(SecretPolicy)
DEFAULT_SECRET_POLICY: SecretPolicy = "refuse"

# Any one of these in the stored bytes makes ``open`` parse them as a possible
# envelope; a single flipped bit cannot remove more than one of them.
_TOKENS = (b'"statestore_encrypted"', b'"key_id"', b'"ciphertext"')
_HEAD = b'{"statestore_encrypted":'
_KEY_HELP = "generate one with: python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())'"


def key_id(key: bytes) -> str:
    """The public id of a 32-byte key: the first 8 bytes of its SHA-256, in hex."""
    return hashlib.sha256(key).digest()[:8].hex()


def parse_key(value: bytes | str, what: str = "encryption key") -> bytes:
    """A 32-byte key from raw bytes or from base64 text (standard or URL-safe alphabet).

    The error names ``what`` and the decoded length, never the value.
    """
    if isinstance(value, bytes):
        if len(value) != KEY_BYTES:
            raise InvalidInputError(f"{what} must be {KEY_BYTES} bytes, got {len(value)} bytes")
        return value
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be bytes or base64 text, not {type(value).__name__}")
    text = value.strip().replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(f"{what} is not valid base64 ({len(text)} characters); {_KEY_HELP}") from None
    if len(raw) != KEY_BYTES:
        raise InvalidInputError(f"{what} must be base64 of {KEY_BYTES} bytes, got {len(raw)} bytes; {_KEY_HELP}")
    return raw


def generate_key() -> str:
    """A new random key as base64 text, as ``STATESTORE_ENCRYPTION_KEY`` expects it."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def associated_data(key: StateKey) -> bytes:
    """What binds a ciphertext to its place: version, app, type and id (none of them may hold ``/``)."""
    return f"statestore:v{VERSION}:{key.app}/{key.type.value}/{key.id}".encode()


def looks_sealed(stored: bytes) -> bool:
    """True if ``stored`` may be an envelope, whole or damaged (cheap: substring tests only)."""
    if len(stored) >= 3 and _HEAD.startswith(stored):
        return True  # an envelope truncated inside its marker
    return any(token in stored for token in _TOKENS)


def _b64field(envelope: Mapping[str, Any], name: str) -> bytes | None:
    value = envelope.get(name)
    if not isinstance(value, str):
        return None
    try:
        return binascii.a2b_base64(value, strict_mode=True)  # strict: no stray characters, exact padding
    except (binascii.Error, ValueError):
        return None


class EncryptingCodec(Codec):
    """Encrypts ``credentials`` (and optionally ``workflows``) with AES-256-GCM; enforces the secret policy.

    ``primary`` (32 raw bytes or base64 text) encrypts new writes; ``old`` keys
    only decrypt. Without a primary key nothing is encrypted, reading an
    encrypted object raises ``DecryptionError``, and ``secret_policy``
    decides about raw secrets in credentials: ``"refuse"`` (the default)
    raises ``SecretPolicyError``, ``"allow"`` stores them as they are.
    ``require_encryption`` (needs a primary key) refuses to read a state of an
    encrypted type that is stored as plain JSON (``UnencryptedStateError``).
    """

    def __init__(
        self,
        primary: bytes | str | None = None,
        old: Iterable[bytes | str] = (),
        *,
        encrypt_workflows: bool = False,
        secret_policy: str = DEFAULT_SECRET_POLICY,
        require_encryption: bool = False,
    ) -> None:
        if require_encryption and primary is None:
            raise InvalidInputError(
                "require_encryption needs a primary encryption key (STATESTORE_REQUIRE_ENCRYPTION needs "
                "STATESTORE_ENCRYPTION_KEY)"
            )
        if secret_policy not in SECRET_POLICIES:
            raise InvalidInputError(f"secret_policy must be one of {', '.join(SECRET_POLICIES)}, got {secret_policy!r}")
        if isinstance(old, (str, bytes)):
            raise InvalidInputError("old keys must be a list of keys, not a single key")
        old_keys = [parse_key(k, f"old encryption key #{i + 1}") for i, k in enumerate(old)]
        if primary is None and old_keys:
            raise InvalidInputError("old encryption keys were given without a primary key")
        self.encrypt_workflows = bool(encrypt_workflows)
        self.secret_policy = secret_policy
        self.require_encryption = bool(require_encryption)
        # Only AESGCM objects and key ids are kept: no attribute holds key bytes.
        self._aeads: dict[str, AESGCM] = {}
        self.primary_key_id: str | None = None
        if primary is not None or old_keys:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        if primary is not None:
            raw = parse_key(primary, "primary encryption key")
            self.primary_key_id = key_id(raw)
            self._aeads[self.primary_key_id] = AESGCM(raw)
        for raw in old_keys:
            self._aeads.setdefault(key_id(raw), AESGCM(raw))

    @property
    def key_ids(self) -> list[str]:
        """Ids of every key that decrypts, the primary first."""
        return list(self._aeads)

    def __repr__(self) -> str:
        old = [k for k in self._aeads if k != self.primary_key_id]
        return (
            f"EncryptingCodec(primary_key_id={self.primary_key_id!r}, old_key_ids={old!r}, "
            f"encrypt_workflows={self.encrypt_workflows}, secret_policy={self.secret_policy!r}, "
            f"require_encryption={self.require_encryption})"
        )

    def encrypts(self, state_type: StateType) -> bool:
        """Whether new writes of ``state_type`` are encrypted."""
        if self.primary_key_id is None:
            return False
        return state_type is StateType.CREDENTIALS or (state_type is StateType.WORKFLOWS and self.encrypt_workflows)

    # -- the Codec hook --------------------------------------------------------

    def seal(self, key: StateKey, plain: bytes) -> bytes:
        if not self.encrypts(key.type):
            return plain
        assert self.primary_key_id is not None
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._aeads[self.primary_key_id].encrypt(nonce, plain, associated_data(key))
        return orjson.dumps(
            {
                MARKER: ALGORITHM,
                "version": VERSION,
                "key_id": self.primary_key_id,
                "nonce": base64.b64encode(nonce).decode("ascii"),
                "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
            }
        )

    def open(self, key: StateKey, stored: bytes) -> Opened:
        wanted = self.encrypts(key.type)
        if not looks_sealed(stored):
            return self._plain(key, stored, wanted)
        try:
            doc = loads(stored)
        except ValueError:
            raise DecryptionError(
                f"{key} is damaged: it looks like an encrypted envelope but is not valid JSON "
                f"({len(stored)} bytes stored, possibly truncated)"
            ) from None
        if not isinstance(doc, dict) or not _is_envelope(doc):
            return self._plain(key, stored, wanted)
        kid, nonce, ciphertext = self._fields(key, doc)
        aead = self._aeads.get(kid)
        if aead is None:
            if not self._aeads:
                raise DecryptionError(
                    f"{key} is encrypted (key id {kid}) but no encryption key is configured; "
                    "set STATESTORE_ENCRYPTION_KEY"
                )
            raise DecryptionError(
                f"{key} is encrypted under key id {kid}, which is neither the primary key nor an old key "
                f"(configured: {', '.join(self._aeads)}); add that key to STATESTORE_ENCRYPTION_OLD_KEYS"
            )
        from cryptography.exceptions import InvalidTag

        try:
            plain = aead.decrypt(nonce, ciphertext, associated_data(key))
        except InvalidTag:
            raise DecryptionError(
                f"{key} does not decrypt under key id {kid}: the object was tampered with, truncated, "
                "or copied from another id, type or app"
            ) from None
        reseal = not wanted or kid != self.primary_key_id
        if reseal:
            logger.debug("%s is stored under key id %s; it will be rewritten on the next write", key, kid)
        return Opened(plain, reseal)

    def check(self, key: StateKey, state: dict[str, Any]) -> None:
        """Refuse the reserved envelope marker as a key, and raw secrets in credentials when they would be plain."""
        if MARKER in state:
            raise InvalidInputError(f"{key}: the top-level key {MARKER!r} is reserved for encrypted envelopes")
        if key.type is not StateType.CREDENTIALS or self.encrypts(key.type) or self.secret_policy == "allow":
            return
        found = find_raw_secrets(state)
        if found:
            shown = ", ".join(repr(p) for p in found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
            raise SecretPolicyError(
                f"{key}: {shown} would store a raw secret in plain JSON. Store a reference instead "
                "(e.g. 'password_ref': 'name-of-secret'), configure STATESTORE_ENCRYPTION_KEY so "
                "credentials are encrypted, or set STATESTORE_SECRET_POLICY=allow"
            )

    def check_state(self, key: StateKey, state: dict[str, Any]) -> None:
        """Refuse a state ``open`` would take for an encrypted envelope: the same test, so what is written reads back.

        Whatever the type and the keys: a state that is encrypted now may be stored in plain JSON
        later (after a key is dropped, or ``encrypt_workflows`` is turned off).
        """
        if not _is_envelope(state):
            return
        if MARKER in state:
            raise InvalidInputError(f"{key}: the top-level key {MARKER!r} is reserved for encrypted envelopes")
        fields = ", ".join(sorted(ENVELOPE_FIELDS.intersection(state)))
        raise InvalidInputError(
            f"{key}: a state of {len(state)} top-level keys including {fields} has the shape of an "
            "encrypted envelope and could not be read back; rename one of those keys or add another"
        )

    # -- helpers ---------------------------------------------------------------

    def _plain(self, key: StateKey, stored: bytes, wanted: bool) -> Opened:
        """A state stored as plain JSON: encrypt it on the next write, or refuse it if encryption is required."""
        if wanted and self.require_encryption:
            raise UnencryptedStateError(
                f"{key} is stored as plain JSON, but encryption is required (STATESTORE_REQUIRE_ENCRYPTION): "
                "it was written before encryption was on, or planted by someone with write access to the "
                "store. It is never merged into; replace_state or delete_state write over it"
            )
        return Opened(stored, wanted)

    @staticmethod
    def _fields(key: StateKey, doc: dict[str, Any]) -> tuple[str, bytes, bytes]:
        """Validate the envelope's shape; anything off is ``DecryptionError``, never a guess."""
        if set(doc) != ENVELOPE_FIELDS:
            raise DecryptionError(f"{key} is damaged: its encrypted envelope has unexpected or missing fields")
        if doc[MARKER] != ALGORITHM:
            raise DecryptionError(f"{key} is damaged or of an unknown format: algorithm is not {ALGORITHM}")
        version = doc["version"]
        if type(version) is not int or version != VERSION:
            raise DecryptionError(f"{key} is damaged or from a newer statestore: envelope version is not {VERSION}")
        kid = doc["key_id"]
        nonce = _b64field(doc, "nonce")
        ciphertext = _b64field(doc, "ciphertext")
        if not isinstance(kid, str) or nonce is None or ciphertext is None:
            raise DecryptionError(f"{key} is damaged: its encrypted envelope has a malformed field")
        if len(nonce) != NONCE_BYTES or len(ciphertext) < TAG_BYTES:
            raise DecryptionError(f"{key} is damaged: its nonce or ciphertext has the wrong length")
        return kid, nonce, ciphertext


def _is_envelope(doc: dict[str, Any]) -> bool:
    """The marker is there, or the exact envelope shape with one field name damaged.

    ``open`` reads such an object as an envelope; ``check_state`` refuses to write one.
    """
    if MARKER in doc:
        return True
    return len(doc) == len(ENVELOPE_FIELDS) and len(ENVELOPE_FIELDS.intersection(doc)) >= len(ENVELOPE_FIELDS) - 1
