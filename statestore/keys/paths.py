"""Key layout and id validation: every state lives at one key, and an id never leaves its slot.

persistent-artifacts/apps/<app>/<type>/<id>/config.json

An id (and an app name) is one path segment that also reads as what it is: no
separators or control characters, at most 255 UTF-8 bytes, no leading or
trailing whitespace, nothing that renders as nothing (``renders_as_nothing``:
default-ignorable code points such as bidi controls, zero-width characters,
variation selectors and Hangul fillers; every format character; every space
but the ASCII one; blank glyphs such as U+2800), and in Unicode NFC form, so
that two ids that look the same are the same id. The whole object key is at
most 1024 UTF-8 bytes, S3's limit. See docs/decisions/0003 and 0037.
"""

from __future__ import annotations

import bisect
import logging
import os
import unicodedata
from dataclasses import dataclass, field

from ..errors import InvalidInputError, ListingOutOfPrefixError, PathTraversalError
from .statetype import StateType

KEY_ROOT = "persistent-artifacts/apps"
STATE_FILE = "config.json"
logger = logging.getLogger(__name__)

#: Ends every ``PathTraversalError`` message: the previous service's words, kept for alerts and tests (decision 0060).
TRAVERSAL = "path traversal detected"

MAX_NAME_BYTES = 255  # a file name on every common file system; ids are file names locally
MAX_KEY_BYTES = 1024  # S3's limit on an object key, prefix included

# Invisible characters that make one name look like another. Named here for clear messages;
# every other character that renders as nothing is refused too (``renders_as_nothing``).
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff")

# Unicode 14.0 (Python 3.11's unicodedata), DerivedCoreProperties.txt: Default_Ignorable_Code_Point =
# Other_Default_Ignorable_Code_Point + Cf + Variation_Selector - White_Space - FFF9..FFFB - Egyptian hieroglyph
# format controls - Prepended_Concatenation_Mark. unicodedata gives Cf; the contributory lists below (PropList.txt)
# and the exceptions are embedded, as inclusive ranges. tests/test_paths.py checks the result against the
# derived table, code point by code point. Each list is sorted (looked up by bisection).
OTHER_DEFAULT_IGNORABLE: tuple[tuple[int, int], ...] = (
    (0x034F, 0x034F),  # COMBINING GRAPHEME JOINER
    (0x115F, 0x1160),  # HANGUL CHOSEONG FILLER, HANGUL JUNGSEONG FILLER
    (0x17B4, 0x17B5),  # KHMER VOWEL INHERENT AQ, AA
    (0x2065, 0x2065),  # reserved
    (0x3164, 0x3164),  # HANGUL FILLER
    (0xFFA0, 0xFFA0),  # HALFWIDTH HANGUL FILLER
    (0xFFF0, 0xFFF8),  # reserved
    (0xE0000, 0xE0000),  # reserved
    (0xE0002, 0xE001F),  # reserved
    (0xE0080, 0xE00FF),  # reserved
    (0xE01F0, 0xE0FFF),  # reserved
)
VARIATION_SELECTORS: tuple[tuple[int, int], ...] = (
    (0x180B, 0x180D),  # MONGOLIAN FREE VARIATION SELECTOR ONE..THREE
    (0x180F, 0x180F),  # MONGOLIAN FREE VARIATION SELECTOR FOUR
    (0xFE00, 0xFE0F),  # VARIATION SELECTOR-1..16
    (0xE0100, 0xE01EF),  # VARIATION SELECTOR-17..256
)
DEFAULT_IGNORABLE_EXCEPTIONS: tuple[tuple[int, int], ...] = (
    (0x0600, 0x0605),  # Prepended_Concatenation_Mark: Arabic number signs (visible)
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0xFFF9, 0xFFFB),  # interlinear annotation characters
    (0x110BD, 0x110BD),  # Prepended_Concatenation_Mark: Kaithi number signs
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),  # Egyptian hieroglyph format controls (13439..1343F since Unicode 15)
)
# Characters whose glyph is blank although no Unicode property says so (docs/decisions/0038).
BLANK_GLYPHS = frozenset("\u2800\U0001d159")  # BRAILLE PATTERN BLANK, MUSICAL SYMBOL NULL NOTEHEAD


def _in(ranges: tuple[tuple[int, int], ...], starts: list[int], cp: int) -> bool:
    i = bisect.bisect_right(starts, cp) - 1
    return i >= 0 and cp <= ranges[i][1]


_ODI_STARTS = [start for start, _ in OTHER_DEFAULT_IGNORABLE]
_VS_STARTS = [start for start, _ in VARIATION_SELECTORS]
_EXCEPTION_STARTS = [start for start, _ in DEFAULT_IGNORABLE_EXCEPTIONS]


def is_default_ignorable(ch: str) -> bool:
    """Whether ``ch`` has the Unicode property Default_Ignorable_Code_Point (derived as Unicode derives it)."""
    cp = ord(ch)
    if unicodedata.category(ch) == "Cf":
        return not _in(DEFAULT_IGNORABLE_EXCEPTIONS, _EXCEPTION_STARTS, cp)
    return _in(OTHER_DEFAULT_IGNORABLE, _ODI_STARTS, cp) or _in(VARIATION_SELECTORS, _VS_STARTS, cp)


def renders_as_nothing(ch: str) -> str | None:
    """What kind of invisible character ``ch`` is (for a message), or None if it shows.

    Default-ignorable code points, every format character (Cf, also the visible exceptions: they
    have no business in a name), every space character but U+0020 (category Zs: no-break, en, em,
    ideographic...), and the blank glyphs of ``BLANK_GLYPHS``.
    """
    category = unicodedata.category(ch)
    if ch in BIDI_CONTROLS:
        return "the bidirectional control character"
    if ch in ZERO_WIDTH:
        return "the zero-width character"
    if category == "Cf":
        return "the invisible format character"
    if category == "Zs" and ch != " ":
        return "the non-ASCII space character"
    if is_default_ignorable(ch):
        return "the default-ignorable (invisible) character"
    if ch in BLANK_GLYPHS:
        return "the blank character"
    return None


def _check_name(value: object, what: str) -> str:
    """Validate one path segment (an id or an app name); raise before any I/O."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, not {type(value).__name__}")
    if value == "":
        raise InvalidInputError(f"{what} must not be empty")
    if value in (".", ".."):
        raise PathTraversalError(f"{what} {value!r} would leave its directory: {TRAVERSAL}")
    plain = value.isascii() and value.isprintable() and "/" not in value and "\\" not in value
    for ch in () if plain else value:  # plain ASCII has no separator or control character: no need to look
        if ch in "/\\":
            raise PathTraversalError(f"{what} {value!r} contains a path separator {ch!r}: {TRAVERSAL}")
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            raise PathTraversalError(f"{what} {value!r} contains a control character {ch!r}: {TRAVERSAL}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:  # lone surrogates cannot name a file or an object
        raise InvalidInputError(f"{what} {value!r} is not valid Unicode text") from exc
    if size > MAX_NAME_BYTES:
        raise InvalidInputError(f"{what} is {size} bytes in UTF-8; at most {MAX_NAME_BYTES} are allowed")
    if value != value.strip():
        if not value.strip():
            raise InvalidInputError(f"{what} {value!r} is only whitespace")
        raise InvalidInputError(f"{what} {value!r} has leading or trailing whitespace, which hides it in listings")
    if not value.isascii():
        _check_looks(value, what)
    return value


def _check_looks(value: str, what: str) -> None:
    """Refuse characters that render as nothing, and non-NFC text: a name must not look like another one."""
    for ch in value:
        kind = renders_as_nothing(ch)
        if kind is not None:
            raise InvalidInputError(
                f"{what} {value!a} contains {kind} U+{ord(ch):04X}; names must not contain characters that "
                "render as nothing (bidi controls, zero-width, format, variation selectors, fillers, spaces "
                "other than ' '): they make one name look like another"
            )
    if not unicodedata.is_normalized("NFC", value):
        raise InvalidInputError(
            f"{what} {value!r} is not in Unicode NFC form; it would look like {unicodedata.normalize('NFC', value)!r} "
            "but be another name. Normalize it first: unicodedata.normalize('NFC', name)"
        )


def check_object_key(key: str, prefix: str = "") -> str:
    """Return ``prefix + key`` if it fits S3's limit of 1024 UTF-8 bytes for an object key, else raise.

    Backends that put a prefix before every key (S3's ``prefix`` option) pass it
    here; the error names the rule and the size, never more of the key than its start.
    """
    full = prefix + key
    size = len(full.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        shown = repr(key[:80]) + ("..." if len(key) > 80 else "")
        extra = f" with the prefix {prefix[:40]!r}" if prefix else ""
        raise InvalidInputError(
            f"object key {shown} is {size} bytes in UTF-8{extra}; "
            f"S3 allows at most {MAX_KEY_BYTES} bytes for a whole object key, prefix included"
        )
    return full


def validate_id(id: str) -> str:  # noqa: A002 - ``id`` is the public parameter name
    """Return ``id`` if it may name a state, else raise ``PathTraversalError`` / ``InvalidInputError``."""
    return _check_name(id, "id")


def validate_app_name(app_name: str) -> str:
    """Return ``app_name`` if it may be the ``<app>`` segment of a key."""
    return _check_name(app_name, "app name")


@dataclass(frozen=True, slots=True)
class StateKey:
    """Where one state lives: app, type and id, and the object key they make."""

    app: str
    type: StateType
    id: str
    object_key: str = field(init=False, repr=False, compare=False)  # built once: every request names it

    def __post_init__(self) -> None:
        object.__setattr__(self, "object_key", f"{type_prefix(self.app, self.type)}{self.id}/{STATE_FILE}")

    def __str__(self) -> str:
        return f"{self.type.value} state {self.id!r}"


def state_key(app: str, type: StateType | str, id: str, *, key_prefix: str = "") -> StateKey:  # noqa: A002
    """Validate all three parts and the length of the object key (after ``key_prefix``) and return the ``StateKey``."""
    skey = StateKey(validate_app_name(app), StateType.coerce(type), validate_id(id))
    check_object_key(skey.object_key, key_prefix)
    return skey


def type_prefix(app: str, type: StateType) -> str:  # noqa: A002
    """The key prefix under which all states of one app and type live (ends with ``/``)."""
    return f"{KEY_ROOT}/{app}/{type.value}/"


def id_from_key(prefix: str, key: str) -> str | None:
    """The id of a state object key listed under ``prefix``, or None for any other object."""
    if not key.startswith(prefix) or not key.endswith("/" + STATE_FILE):
        return None
    candidate = key[len(prefix) : -len(STATE_FILE) - 1]
    try:
        return validate_id(candidate)
    except InvalidInputError as exc:  # written by another tool: not a name statestore reads or writes
        logger.warning("not listing %s: %s", ascii(key), ascii(str(exc)))
        return None


def listed_id(prefix: str, key: str, backend: str) -> str | None:
    """``id_from_key`` for a key ``backend`` listed under ``prefix``; ``ListingOutOfPrefixError`` if it is outside.

    A key outside the prefix asked for means the backend ignored the prefix: the listing is refused,
    not filtered, so that no bulk operation acts on a listing that cannot be trusted.
    """
    if not key.startswith(prefix):
        raise ListingOutOfPrefixError(
            f"{backend} listed a key outside the prefix {prefix!r} asked for: it ignored the prefix, so the "
            "listing cannot be trusted and nothing was done with it",
            prefix=prefix,
        )
    return id_from_key(prefix, key)


def state_path(root: str, app_name: str, id: str, state_type: StateType | str) -> str:  # noqa: A002
    """The local path of a state: ``<root>/persistent-artifacts/apps/<app>/<type>/<id>/config.json``.

    Raises ``PathTraversalError`` for an id or app name that would leave its slot.
    """
    return os.path.join(root, state_key(app_name, state_type, id).object_key)
