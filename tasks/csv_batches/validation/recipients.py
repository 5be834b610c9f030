"""Recipient validation for CSV batches: cell cleaning, SMS numbers, email addresses, letters.

The rules are the web app's validator's, written down in docs/validation.md; the labelled corpus
in ``tests/data/recipients.jsonl`` pins them down.  Three things here exist only for speed:

* ``clean_cell`` skips the obscure-whitespace work for plain ASCII cells;
* ``fast_uk_mobile`` recognises the common spellings of UK mobile numbers and decides them
  with a digit table built at import time from phonenumbers' own +44 metadata (the metadata's
  patterns are run as automata over every 10-digit number 7xxxxxxxxx), so that most rows
  never reach ``phonenumbers.parse`` (50-150 µs each here).  Anything it is not sure about
  returns ``None`` and the caller falls through to the phonenumbers path;
* ``validate_sms_slow`` is the documented procedure minus provably redundant phonenumbers calls.
  The tests keep the literal procedure as the yardstick (``tests/csv_reference.py``) and
  assert identical results on the corpus and a generated set.

Email hosts repeat within a file, so their checks are cached.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType, ValidationResult

from tasks.csv_batches.validation import countries

__all__ = [
    "EMAIL_PATTERN",
    "MAX_EMAIL_LENGTH",
    "OBSCURE_WHITESPACE",
    "RecipientResult",
    "address_flags",
    "clean_cell",
    "email_host_is_valid",
    "email_is_valid",
    "fast_uk_mobile",
    "validate_address",
    "validate_email",
    "validate_sms",
    "validate_sms_slow",
]

# --------------------------------------------------------------------------------------------
# Cell cleaning
# --------------------------------------------------------------------------------------------

OBSCURE_ZERO_WIDTH_WHITESPACE = (
    "\u180e"  # Mongolian vowel separator
    "\u200b"  # zero width space
    "\u200c"  # zero width non-joiner
    "\u200d"  # zero width joiner
    "\u2060"  # word joiner
    "\ufeff"  # zero width no-break space (also the byte-order mark)
    "\u2028"  # line separator
    "\u2029"  # paragraph separator
)
OBSCURE_FULL_WIDTH_WHITESPACE = (
    "\u00a0"  # no-break space
    "\u202f"  # narrow no-break space
)
OBSCURE_WHITESPACE: str = OBSCURE_ZERO_WIDTH_WHITESPACE + OBSCURE_FULL_WIDTH_WHITESPACE

# "Ordinary" whitespace is string.whitespace, not str.isspace(): the reference strips with
# .strip(string.whitespace), so e.g. U+001C-U+001F and U+2003 are *not* stripped at the ends.
_ORDINARY_WHITESPACE = string.whitespace
_REMOVE_OBSCURE = str.maketrans(dict.fromkeys(OBSCURE_WHITESPACE))


def clean_cell(value: str) -> str:
    """Remove obscure whitespace anywhere, then strip ordinary whitespace at both ends."""
    if value.isascii():
        # No obscure whitespace can be in an ASCII string: skip the translate.
        return value.strip(_ORDINARY_WHITESPACE)
    return value.translate(_REMOVE_OBSCURE).strip(_ORDINARY_WHITESPACE)


# --------------------------------------------------------------------------------------------
# Result type and messages
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """The verdict on one recipient.

    ``normalised`` is set for valid recipients (and for letters also when invalid, as the
    normalised address lines).  ``flags`` is only used for letters: the names of the address
    checks that held, as in the corpus.
    """

    valid: bool
    normalised: str | None
    code: str | None
    message: str | None
    flags: tuple[str, ...] = ()


# Messages never include the recipient value: they end up in job outcomes and logs.
MESSAGES: dict[str, str] = {
    "missing": "Missing",
    "too_short": "Mobile number is too short",
    "too_long": "Mobile number is too long",
    "invalid_number": "Not a valid phone number",
    "not_a_uk_mobile": "Not a UK mobile number",
    "unknown_character": "Mobile numbers can only include: 0 1 2 3 4 5 6 7 8 9 ( ) + -",
    "unsupported_country_code": "Country code not found - check the mobile number you entered",
    "invalid_email": "Not a valid email address",
    "invalid_address": "Not a valid postal address",
}


def _fail(code: str) -> RecipientResult:
    return RecipientResult(False, None, code, MESSAGES[code])


_FAIL = {code: _fail(code) for code in MESSAGES}  # results are immutable: share them

# --------------------------------------------------------------------------------------------
# SMS: the full (phonenumbers) path
# --------------------------------------------------------------------------------------------

_UK_COUNTRY_CODE = 44
_ALLOWED_SMS_CHARS = frozenset(string.whitespace + OBSCURE_WHITESPACE + "()-+" + string.digits)
_ALLOWED_TYPES = frozenset(
    {
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
        PhoneNumberType.UAN,
        PhoneNumberType.PERSONAL_NUMBER,
    }
)
# UK numbers of these types need the "send to UK landlines" permission.
_UK_LANDLINE_TYPES = frozenset(
    {PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE, PhoneNumberType.UAN}
)
_UNSUPPORTED_COUNTRY_CODES = frozenset(
    {247, 290, 688, 800, 808, 850, 870, 878, 881, 882, 883, 888, 979}
)
SUPPORTED_COUNTRY_CODES: frozenset[int] = (
    frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE) - _UNSUPPORTED_COUNTRY_CODES
)
_POSSIBILITY_CODES = {
    ValidationResult.TOO_SHORT: "too_short",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too_short",
    ValidationResult.TOO_LONG: "too_long",
    ValidationResult.INVALID_COUNTRY_CODE: "unsupported_country_code",
    ValidationResult.INVALID_LENGTH: "invalid_number",
}
# OFCOM drama numbers: "7700" then any digit (the reference's character class happens to
# accept every digit).  phonenumbers' metadata says they are not valid; the service accepts them.
_TV_NUMBER = re.compile(r"7700\d")


def _thoroughly_normalise(value: str) -> str:
    """The second-chance spelling: no '+', no leading zeros, non-ASCII as '?'."""
    value = value.replace("+", "").lstrip("0")
    if not value.isascii():
        value = "".join(c if c.isascii() else "?" for c in value)
    return value


_FIRST_DIGIT = re.compile(r"[0-9]")


def _attempt(value: str) -> tuple[str | None, phonenumbers.PhoneNumber | None, int]:
    """The documented steps on one spelling, without their redundant work; also returns the
    number type (the literal steps are the tests' yardstick: ``tests/csv_reference.py``).

    * ``is_valid_number(n) and number_type(n) in allowed`` is ``number_type(n) in allowed``:
      both resolve the same region and type, and UNKNOWN is not allowed.
    * The forced-international parse of ``"+" + value`` cannot succeed when the first digit
      of the value is 0 (phonenumbers reads country code 0 and raises), so it is skipped.
    """
    if not _ALLOWED_SMS_CHARS.issuperset(value):
        return "unknown_character", None, PhoneNumberType.UNKNOWN
    if value == "":
        return "too_short", None, PhoneNumberType.UNKNOWN
    try:
        number = phonenumbers.parse(value, "GB")
    except phonenumbers.NumberParseException:
        return "invalid_number", None, PhoneNumberType.UNKNOWN
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != ValidationResult.IS_POSSIBLE:
        forced = None
        first_digit = _FIRST_DIGIT.search(value)
        if first_digit is not None and first_digit[0] != "0":
            try:
                candidate = phonenumbers.parse("+" + value)
            except phonenumbers.NumberParseException:
                candidate = None
            if candidate is not None and phonenumbers.is_possible_number(candidate):
                forced = candidate
        if forced is None:
            return _POSSIBILITY_CODES.get(reason, "invalid_number"), None, PhoneNumberType.UNKNOWN
        number = forced
    number_type = phonenumbers.number_type(number)
    if number_type not in _ALLOWED_TYPES and not _TV_NUMBER.match(str(number.national_number)):
        return "invalid_number", None, number_type
    return None, number, number_type


def validate_sms_slow(
    value: str, *, allow_international: bool = False, allow_uk_landline: bool = False
) -> RecipientResult:
    """Validate a phone number with phonenumbers (no fast path); ``value`` is raw or cleaned."""
    value = clean_cell(value)
    if not value:
        return _FAIL["missing"]
    code, number, number_type = _attempt(value)
    if code is not None:
        retry = _thoroughly_normalise(value)
        if retry == value:
            return _FAIL[code]  # the same spelling again would fail the same way
        code, number, number_type = _attempt(retry)
        if code is not None:
            return _FAIL[code]
    assert number is not None
    country_code = number.country_code
    if not allow_international and country_code != _UK_COUNTRY_CODE:
        return _FAIL["not_a_uk_mobile"]
    if (
        country_code == _UK_COUNTRY_CODE
        and not allow_uk_landline
        and number_type in _UK_LANDLINE_TYPES
    ):
        return _FAIL["not_a_uk_mobile"]
    if country_code not in SUPPORTED_COUNTRY_CODES:
        return _FAIL["unsupported_country_code"]
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return RecipientResult(True, e164[1:], None, None)


# --------------------------------------------------------------------------------------------
# SMS: the fast path for UK mobiles, built from phonenumbers' GB metadata
# --------------------------------------------------------------------------------------------

# phonenumbers._number_type_helper checks the types in this order; the first that matches wins,
# and "mobile" is only reached when no earlier type matched.
_TYPE_ORDER = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)
_UK_NATIONAL_LENGTH = 10  # every UK mobile: 7 + 9 digits
# Types a +44 number may have and be texted by every service (no landline permission needed).
# fixed_line is deliberately absent: a fixed_line match may really be fixed_line_or_mobile.
_FAST_ACCEPTED_TYPES = frozenset({"mobile", "personal_number"})
_FAST_LANDLINE_TYPES = frozenset({"fixed_line", "uan"})
_DIGITS = "0123456789"


class _UnsupportedPattern(ValueError):
    """A metadata pattern uses syntax the digit automaton below does not model."""


def _parse_digit_regex(pattern: str) -> tuple:
    """Parse the small regex dialect of phonenumbers' metadata into a tree.

    Nodes: ("set", frozenset of digits), ("seq", [nodes]), ("alt", [nodes]),
    ("rep", node, min, max-or-None).  Anything else raises _UnsupportedPattern, which turns
    the fast path off rather than risk a wrong answer.
    """
    pos = 0

    def peek() -> str:
        return pattern[pos] if pos < len(pattern) else ""

    def take() -> str:
        nonlocal pos
        if pos >= len(pattern):
            raise _UnsupportedPattern(pattern)
        pos += 1
        return pattern[pos - 1]

    def parse_alt() -> tuple:
        branches = [parse_seq()]
        while peek() == "|":
            take()
            branches.append(parse_seq())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def parse_seq() -> tuple:
        items = []
        while peek() not in ("", "|", ")"):
            items.append(parse_quantified(parse_atom()))
        return ("seq", items)

    def parse_class() -> frozenset[str]:
        chars: set[str] = set()
        negate = peek() == "^"
        if negate:
            take()
        while peek() != "]":
            c = take()
            if c == "\\":
                if take() != "d":
                    raise _UnsupportedPattern(pattern)
                chars.update(_DIGITS)
            elif c in _DIGITS and peek() == "-" and pattern[pos + 1 : pos + 2] in tuple(_DIGITS):
                take()
                chars.update(_DIGITS[int(c) : int(take()) + 1])
            elif c in _DIGITS:
                chars.add(c)
            else:
                raise _UnsupportedPattern(pattern)
        take()
        return frozenset(set(_DIGITS) - chars if negate else chars)

    def parse_atom() -> tuple:
        c = take()
        if c in _DIGITS:
            return ("set", frozenset(c))
        if c == "\\":
            if take() != "d":
                raise _UnsupportedPattern(pattern)
            return ("set", frozenset(_DIGITS))
        if c == "[":
            return ("set", parse_class())
        if c == "(":
            if pattern.startswith("?:", pos):
                take()
                take()
            elif peek() == "?":
                raise _UnsupportedPattern(pattern)
            node = parse_alt()
            if take() != ")":
                raise _UnsupportedPattern(pattern)
            return node
        raise _UnsupportedPattern(pattern)

    def parse_number() -> int:
        start = pos
        while peek().isdigit():
            take()
        if start == pos:
            raise _UnsupportedPattern(pattern)
        return int(pattern[start:pos])

    def parse_quantified(node: tuple) -> tuple:
        while True:
            c = peek()
            if c == "?":
                take()
                node = ("rep", node, 0, 1)
            elif c == "*":
                take()
                node = ("rep", node, 0, None)
            elif c == "+":
                take()
                node = ("rep", node, 1, None)
            elif c == "{":
                take()
                low = parse_number()
                high: int | None = low
                if peek() == ",":
                    take()
                    high = None if peek() == "}" else parse_number()
                if take() != "}":
                    raise _UnsupportedPattern(pattern)
                node = ("rep", node, low, high)
            else:
                return node
            if peek() in ("?", "+"):  # lazy/possessive modifiers: not in the metadata
                raise _UnsupportedPattern(pattern)

    tree = parse_alt()
    if pos != len(pattern):
        raise _UnsupportedPattern(pattern)
    return tree


class _DigitNFA:
    """A Thompson NFA over the digits for one pattern; states are ints, 0 is the start."""

    def __init__(self, pattern: str) -> None:
        self.eps: list[list[int]] = []
        self.moves: list[list[tuple[frozenset[str], int]]] = []
        start = self._new()
        end = self._build(_parse_digit_regex(pattern), start)
        self.end = end
        self._closures: dict[frozenset[int], frozenset[int]] = {}
        self.start = self.closure(frozenset({start}))

    def _new(self) -> int:
        self.eps.append([])
        self.moves.append([])
        return len(self.eps) - 1

    def _build(self, node: tuple, start: int) -> int:
        kind = node[0]
        if kind == "set":
            end = self._new()
            self.moves[start].append((node[1], end))
            return end
        if kind == "seq":
            for item in node[1]:
                start = self._build(item, start)
            return start
        if kind == "alt":
            end = self._new()
            for branch in node[1]:
                branch_start = self._new()
                self.eps[start].append(branch_start)
                self.eps[self._build(branch, branch_start)].append(end)
            return end
        _, sub, low, high = node
        for _ in range(low):
            start = self._build(sub, start)
        if high is None:  # sub* : loop back
            loop = self._new()
            self.eps[start].append(loop)
            self.eps[self._build(sub, loop)].append(loop)
            return loop
        end = self._new()
        self.eps[start].append(end)
        for _ in range(high - low):
            start = self._build(sub, start)
            self.eps[start].append(end)
        return end

    def closure(self, states: frozenset[int]) -> frozenset[int]:
        cached = self._closures.get(states)
        if cached is None:
            seen = set(states)
            todo = list(states)
            while todo:
                for target in self.eps[todo.pop()]:
                    if target not in seen:
                        seen.add(target)
                        todo.append(target)
            cached = self._closures[states] = frozenset(seen)
        return cached

    def step(self, states: frozenset[int], digit: str) -> frozenset[int]:
        return self.closure(
            frozenset(t for s in states for chars, t in self.moves[s] if digit in chars)
        )


_MATCHED = frozenset({-1})  # sticky state of a prefix-matching ("re.match") automaton


def _build_uk_mobile_trie() -> dict | None:
    """A digit trie deciding "fast-accept?" for every +44 national number 7xxxxxxxxx.

    It mirrors, for 10-digit numbers, what phonenumbers does with them: region selection among
    the +44 regions (leading digits, else the first region whose type is known), the type
    check in _number_type_helper's order, plus the OFCOM drama-number exception.  Built from
    phonenumbers' metadata by running the metadata's own patterns as automata over all
    10-digit strings at once, so a new phonenumbers release changes the trie with it.  Leaves
    are bools; a subtree whose every completion has the same answer is collapsed to that
    bool.  The root is the node after the leading "7".  None (fast path off) if the metadata
    does not fit this model.
    """
    if PhoneMetadata.metadata_for_region("GB") is None:
        return None
    main = PhoneMetadata.metadata_for_region("GB")
    if main.country_code != _UK_COUNTRY_CODE or _UK_NATIONAL_LENGTH not in (
        main.general_desc.possible_length or ()
    ):
        return None  # is_possible_number would not say IS_POSSIBLE for 10 digits
    automata: list[_DigitNFA] = []
    prefix_automata: set[int] = set()
    # Per region: (index of leading-digits automaton or None, index of general desc or None,
    # [(type name, automaton index)]).
    regions: list[tuple[int | None, int | None, list[tuple[str, int]]]] = []

    def add(pattern: str, *, prefix: bool = False) -> int:
        automata.append(_DigitNFA(pattern))
        if prefix:
            prefix_automata.add(len(automata) - 1)
        return len(automata) - 1

    def fits(desc: object) -> bool:
        lengths = getattr(desc, "possible_length", None)
        return not lengths or _UK_NATIONAL_LENGTH in lengths

    try:
        for region_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(_UK_COUNTRY_CODE, ()):
            metadata = PhoneMetadata.metadata_for_region(region_code)
            if metadata is None:
                continue
            if metadata.same_mobile_and_fixed_line_pattern:
                return None
            leading = add(metadata.leading_digits, prefix=True) if metadata.leading_digits else None
            general_desc = metadata.general_desc
            general = None
            if (
                general_desc is not None
                and general_desc.national_number_pattern
                and fits(general_desc)
            ):
                general = add(general_desc.national_number_pattern)
            types = []
            for name in _TYPE_ORDER:
                desc = getattr(metadata, name)
                if desc is not None and desc.national_number_pattern and fits(desc):
                    types.append((name, add(desc.national_number_pattern)))
            regions.append((leading, general, types))
        tv = add(_TV_NUMBER.pattern, prefix=True)
    except _UnsupportedPattern:
        return None
    if not regions:
        return None

    def verdict(state: tuple[frozenset[int], ...]) -> bool:
        def accepted(index: int | None) -> bool:
            if index is None:
                return False
            if index in prefix_automata:
                return state[index] is _MATCHED
            return automata[index].end in state[index]

        number_type = None
        for leading, general, types in regions:
            if leading is not None and not accepted(leading):
                continue
            region_type = None
            if accepted(general):
                region_type = next((name for name, index in types if accepted(index)), None)
            if leading is not None or region_type is not None:
                number_type = region_type
                break
        return number_type in _FAST_ACCEPTED_TYPES or (
            number_type not in _FAST_LANDLINE_TYPES and accepted(tv)
        )

    def advance(state: tuple[frozenset[int], ...], digit: str) -> tuple[frozenset[int], ...]:
        new = []
        for index, states in enumerate(state):
            if states is _MATCHED:
                new.append(states)
                continue
            stepped = automata[index].step(states, digit)
            if index in prefix_automata and automata[index].end in stepped:
                stepped = _MATCHED
            new.append(stepped)
        return tuple(new)

    memo: dict[tuple[int, tuple[frozenset[int], ...]], bool | dict] = {}

    def explore(depth: int, state: tuple[frozenset[int], ...]) -> bool | dict:
        key = (depth, state)
        if key in memo:
            return memo[key]
        if depth == _UK_NATIONAL_LENGTH:
            node: bool | dict = verdict(state)
        else:
            children = {d: explore(depth + 1, advance(state, d)) for d in _DIGITS}
            values = list(children.values())
            first = values[0]
            uniform = isinstance(first, bool) and all(v is first for v in values)
            node = first if uniform else children
        memo[key] = node
        return node

    start = tuple(
        _MATCHED if i in prefix_automata and a.end in a.start else a.start
        for i, a in enumerate(automata)
    )
    root = explore(1, advance(start, "7"))
    return root if isinstance(root, dict) else {d: root for d in _DIGITS}


_UK_MOBILE_TRIE = _build_uk_mobile_trie()
_TABLE_DEPTH = 4  # digits after the leading 7 looked up at once


def _flatten(trie: dict | None) -> dict[str, bool | dict] | None:
    """The trie as one dict keyed by the 4 digits after the 7 (values: bool or deeper trie).

    One slice and one dict lookup decide over 99% of numbers; 10,000 small entries.
    """
    if trie is None:
        return None
    table: dict[str, bool | dict] = {}

    def fill(node: bool | dict, prefix: str) -> None:
        if isinstance(node, bool):
            width = _TABLE_DEPTH - len(prefix)
            for rest in range(10**width):
                table[prefix + (str(rest).zfill(width) if width else "")] = node
        elif len(prefix) == _TABLE_DEPTH:
            table[prefix] = node
        else:
            for digit, child in node.items():
                fill(child, prefix + digit)

    fill(trie, "")
    return table


_UK_MOBILE_TABLE = _flatten(_UK_MOBILE_TRIE)


# The shapes the fast path knows, on the digits (and leading '+') of a cell.  [0-9], not \d:
# \d would also accept non-ASCII digits, which the service rejects.  Each alternative fixes the
# prefix and the total length fixes which one applies, so the national part is unambiguous.
_FAST_SHAPE = re.compile(r"(?:0|44|0044|\+44|\+440)(7[0-9]{9})")


def fast_uk_mobile(value: str) -> str | None:
    """Normalised form (``447...``) of a cleaned cell that is plainly a UK mobile, else None.

    Handles 07xxxxxxxxx, +447xxxxxxxxx, +44(0)7xxxxxxxxx, 447xxxxxxxxx and 00447xxxxxxxxx,
    with spaces, brackets and dashes anywhere, for numbers that every service may text (mobile,
    personal, OFCOM drama).  None means "not sure": use the full path.
    """
    if _UK_MOBILE_TABLE is None:
        return None
    match = _FAST_SHAPE.fullmatch(value)
    if match is None:
        if len(value) > 40:
            return None
        # Spacing and grouping that phonenumbers ignores.  (str.replace beats str.translate
        # several times over on short strings.)
        digits = value.replace(" ", "")
        if "-" in digits or "(" in digits or ")" in digits:
            digits = digits.replace("-", "").replace("(", "").replace(")", "")
        # A '+' after a bracket is left to phonenumbers.
        if digits[:1] == "+" and value[0] != "+":
            return None
        match = _FAST_SHAPE.fullmatch(digits)
        if match is None:
            return None
    national = match[1]
    node = _UK_MOBILE_TABLE[national[1:5]]
    if node is not True and node is not False:
        for digit in national[5:]:
            node = node[digit]
            if node is True or node is False:
                break
    return "44" + national if node is True else None


def validate_sms(
    value: str, *, allow_international: bool = False, allow_uk_landline: bool = False
) -> RecipientResult:
    """Validate a phone number cell (raw or cleaned) against the service's permissions."""
    cleaned = clean_cell(value)
    normalised = fast_uk_mobile(cleaned)
    if normalised is not None:
        # A valid UK mobile passes whatever the permissions are.
        return RecipientResult(True, normalised, None, None)
    return validate_sms_slow(
        cleaned, allow_international=allow_international, allow_uk_landline=allow_uk_landline
    )


# --------------------------------------------------------------------------------------------
# Email
# --------------------------------------------------------------------------------------------

# fullmatch == the reference's re.match(^...$) because cleaned cells never end in "\n".
EMAIL_PATTERN = re.compile(r"[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~\-]+@([^.@][^@\s]+)")
# Hosts are ASCII after IDNA encoding, so explicit ASCII classes equal the reference's
# case-insensitive ones.
_HOST_LABEL = re.compile(r"(?:xn|[a-zA-Z0-9]+)(?:-?-[a-zA-Z0-9]+)*")
_TLD = re.compile(r"[a-zA-Z]{2,63}|xn--(?:[a-zA-Z0-9]+-)*[a-zA-Z0-9]+")
MAX_EMAIL_LENGTH = 320
_MAX_HOST_LENGTH = 253
_MAX_LABEL_LENGTH = 63


@lru_cache(maxsize=8192)
def email_host_is_valid(host: str) -> bool:
    """The host checks; cached because a file's addresses share a handful of hosts."""
    try:
        # Python's built-in IDNA 2003 codec, as the reference uses.
        encoded = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = encoded.split(".")
    if len(encoded) > _MAX_HOST_LENGTH or len(labels) < 2:
        return False
    for label in labels:
        if not label or len(label) > _MAX_LABEL_LENGTH or not _HOST_LABEL.fullmatch(label):
            return False
    return _TLD.fullmatch(labels[-1]) is not None


def email_is_valid(cleaned: str) -> bool:
    """The email checks on an already-cleaned, non-empty cell (the hot path of check_row)."""
    match = EMAIL_PATTERN.fullmatch(cleaned)
    return (
        match is not None
        and len(cleaned) <= MAX_EMAIL_LENGTH
        and ".." not in cleaned
        and email_host_is_valid(match[1])
    )


def validate_email(value: str) -> RecipientResult:
    """Validate an email address cell (raw or cleaned); normalised is the cleaned address."""
    value = clean_cell(value)
    if not value:
        return _FAIL["missing"]
    if not email_is_valid(value):
        return _FAIL["invalid_email"]
    return RecipientResult(True, value, None, None)


# --------------------------------------------------------------------------------------------
# Letters
# --------------------------------------------------------------------------------------------

FLAG_NAMES: tuple[str, ...] = (
    "has_enough_lines",
    "has_too_many_lines",
    "has_valid_last_line",
    "has_invalid_characters",
    "has_no_fixed_abode_address",
    "has_invalid_country_for_bfpo_address",
    "has_alphanumeric_character_in_address_lines_1_and_2",
)
MIN_ADDRESS_LINES = 3
MAX_ADDRESS_LINES = 7
_INVALID_FIRST_CHARACTERS = tuple('@()=[]"\\/,<>~')
_WHITESPACE_BEFORE_PUNCTUATION = re.compile(r"[ \t]+([,.])")
_BFPO_LINE = re.compile(r"\s*bfpo\s*(?:c/o)?(?:\s*(\d+))?\s*")
_NO_FIXED_ABODE = re.compile(r"no fixed (?:abode|address)", re.IGNORECASE)
_ALPHANUMERIC = re.compile(r"[a-zA-Z0-9]")
_REPLACE_FULL_WIDTH = str.maketrans(dict.fromkeys(OBSCURE_FULL_WIDTH_WHITESPACE, " "))
_REMOVE_ZERO_WIDTH = str.maketrans(dict.fromkeys(OBSCURE_ZERO_WIDTH_WHITESPACE))
_REMOVE_ALL_WHITESPACE = str.maketrans(dict.fromkeys(string.whitespace + OBSCURE_WHITESPACE))
UK_POSTCODE_AREAS: tuple[str, ...] = tuple(
    [
        "AB",
        "AL",
        "B",
        "BA",
        "BB",
        "BD",
        "BF",
        "BH",
        "BL",
        "BN",
        "BR",
        "BS",
        "BT",
        "BX",
        "CA",
        "CB",
        "CF",
        "CH",
        "CM",
        "CO",
        "CR",
        "CT",
        "CV",
        "CW",
        "DA",
        "DD",
        "DE",
        "DG",
        "DH",
        "DL",
        "DN",
        "DT",
        "DY",
        "E",
        "EC",
        "EH",
        "EN",
        "EX",
        "FK",
        "FY",
        "G",
        "GL",
        "GU",
        "GY",
        "HA",
        "HD",
        "HG",
        "HP",
        "HR",
        "HS",
        "HU",
        "HX",
        "IG",
        "IM",
        "IP",
        "IV",
        "JE",
        "KA",
        "KT",
        "KW",
        "KY",
        "L",
        "GIR",
        "LA",
        "LD",
        "LE",
        "LL",
        "LN",
        "LS",
        "LU",
        "M",
        "ME",
        "MK",
        "ML",
        "N",
        "NE",
        "NG",
        "NN",
        "NP",
        "NR",
        "NW",
        "OL",
        "OX",
        "PA",
        "PE",
        "PH",
        "PL",
        "PO",
        "PR",
        "RG",
        "RH",
        "RM",
        "S",
        "SA",
        "SE",
        "SG",
        "SK",
        "SL",
        "SM",
        "SN",
        "SO",
        "SP",
        "SR",
        "SS",
        "ST",
        "SW",
        "SY",
        "TA",
        "TD",
        "TF",
        "TN",
        "TQ",
        "TR",
        "TS",
        "TW",
        "UB",
        "W",
        "WA",
        "WC",
        "WD",
        "WF",
        "WN",
        "WR",
        "WS",
        "WV",
        "YO",
        "ZE",
    ]
)
_UK_POSTCODE = re.compile(
    rf"(?:{'|'.join(UK_POSTCODE_AREAS)})[0-9][0-9A-Z]?[0-9][ABD-HJLNP-UW-Z]{{2}}"
)

_ADDRESS_MESSAGES = {
    "has_enough_lines": "Address must be at least 3 lines",
    "has_too_many_lines": "Address must be no more than 7 lines",
    "has_invalid_characters": (
        'Address lines must not start with any of the following characters: @ ( ) = [ ] " \\ / '
        ", < > ~"
    ),
    "has_no_fixed_abode_address": "Address must not be a 'no fixed abode' address",
    "has_invalid_country_for_bfpo_address": "The last line of a BFPO address must not be a country",
    "has_valid_last_line": "Last line of the address must be a real UK postcode",
    "has_valid_last_line_international": (
        "Last line of the address must be a UK postcode or another country"
    ),
    "has_alphanumeric_character_in_address_lines_1_and_2": (
        "Address lines 1 and 2 must each include at least one letter or number"
    ),
}


def _normalise_line_whitespace(line: str) -> str:
    """Full-width obscure spaces become spaces, zero-width ones go, runs collapse to one space."""
    if not line.isascii():
        line = line.translate(_REPLACE_FULL_WIDTH).translate(_REMOVE_ZERO_WIDTH)
    return " ".join(line.split())


def format_postcode(line: str) -> str | None:
    """'sw1a1aa' -> 'SW1A 1AA' when the line is a real UK postcode, else None."""
    postcode = line.translate(_REMOVE_ALL_WHITESPACE).upper()
    if _UK_POSTCODE.fullmatch(postcode) is None:
        return None
    return postcode[:-3] + " " + postcode[-3:]


@dataclass(slots=True)
class _Address:
    normalised_lines: list[str]
    flags: dict[str, bool]
    blank: bool


def _analyse_address(lines: list[str], allow_international: bool) -> _Address:
    """The reference's postal-address model, reduced to what the verdict needs."""
    # Each given line may itself hold several lines; blank lines and trailing ", " go.
    raw_lines: list[str] = []
    for given in lines:
        for piece in given.splitlines():
            line = _normalise_line_whitespace(piece).rstrip(" ,")
            if line:
                raw_lines.append(_WHITESPACE_BEFORE_PUNCTUATION.sub(r"\1", line))
    blank = not raw_lines
    if blank:
        raw_lines = [""]

    # BFPO: the first "BFPO <number>" line gives the number; every BFPO-ish line is dropped.
    bfpo_number: int | None = None
    bfpo_matches = [_BFPO_LINE.fullmatch(line.lower()) for line in raw_lines]
    for match in bfpo_matches:
        if match and match.group(1):
            bfpo_number = int(match.group(1))
            break
    if bfpo_number is not None:
        body = [line for line, match in zip(raw_lines, bfpo_matches, strict=True) if not match]
    else:
        body = raw_lines

    # Country: trailing lines naming the UK are dropped; a foreign country last line makes
    # the address international.
    country = countries.lookup(body[-1]) if body else None
    international = country is not None and country != countries.UK
    if country is None:
        without_country = body
    elif international:
        without_country = body[:-1]
    else:
        trailing_uk = 0
        for line in reversed(body):
            if countries.lookup(line) != countries.UK:
                break
            trailing_uk += 1
        without_country = body[:-trailing_uk]

    postcode = None
    if not international and without_country:
        postcode = format_postcode(without_country[-1])

    is_bfpo = bfpo_number is not None
    if international:
        normalised = [*without_country, *([f"BFPO {bfpo_number}"] if is_bfpo else []), country]
    elif postcode:
        normalised = [*without_country[:-1], postcode]
        if is_bfpo:
            normalised.append(f"BFPO {bfpo_number}")
    else:
        normalised = list(without_country)
        if is_bfpo:
            normalised.append(f"BFPO {bfpo_number}")

    line_count = len("\n".join(normalised).splitlines())
    invalid_country_for_bfpo = international and is_bfpo
    flags = {
        "has_enough_lines": line_count >= MIN_ADDRESS_LINES,
        "has_too_many_lines": line_count > MAX_ADDRESS_LINES,
        "has_valid_last_line": bool(
            (allow_international and international and not is_bfpo)
            or postcode is not None
            or (is_bfpo and not invalid_country_for_bfpo)
        ),
        "has_invalid_characters": any(
            line.startswith(_INVALID_FIRST_CHARACTERS) for line in normalised
        ),
        "has_no_fixed_abode_address": any(line.lower() == "nfa" for line in normalised)
        or _NO_FIXED_ABODE.search("\n".join(normalised)) is not None,
        "has_invalid_country_for_bfpo_address": invalid_country_for_bfpo,
        "has_alphanumeric_character_in_address_lines_1_and_2": len(normalised) >= 2
        and all(_ALPHANUMERIC.search(line) for line in normalised[:2]),
    }
    return _Address(normalised, flags, blank)


def _first_failure(flags: dict[str, bool], allow_international: bool) -> str | None:
    """The message of the first failed check, in the order a person would fix them."""
    if not flags["has_enough_lines"]:
        return _ADDRESS_MESSAGES["has_enough_lines"]
    if flags["has_too_many_lines"]:
        return _ADDRESS_MESSAGES["has_too_many_lines"]
    if flags["has_invalid_characters"]:
        return _ADDRESS_MESSAGES["has_invalid_characters"]
    if flags["has_no_fixed_abode_address"]:
        return _ADDRESS_MESSAGES["has_no_fixed_abode_address"]
    if flags["has_invalid_country_for_bfpo_address"]:
        return _ADDRESS_MESSAGES["has_invalid_country_for_bfpo_address"]
    if not flags["has_valid_last_line"]:
        key = "has_valid_last_line_international" if allow_international else "has_valid_last_line"
        return _ADDRESS_MESSAGES[key]
    if not flags["has_alphanumeric_character_in_address_lines_1_and_2"]:
        return _ADDRESS_MESSAGES["has_alphanumeric_character_in_address_lines_1_and_2"]
    return None


def address_flags(lines: list[str], *, allow_international: bool = False) -> dict[str, bool]:
    """Which address checks hold, by the corpus's flag names (all seven keys present)."""
    return dict(_analyse_address(lines, allow_international).flags)


def validate_address(lines: list[str], *, allow_international: bool = False) -> RecipientResult:
    """Validate letter address lines (first to last, raw or cleaned).

    ``normalised`` is the normalised lines joined by newlines (blank lines dropped, trailing
    UK country lines dropped, a foreign country as its canonical name, the postcode as
    ``SW1A 1AA``, a BFPO number as ``BFPO 1234``); it is set for invalid addresses too.
    ``flags`` lists the checks that held.
    """
    address = _analyse_address(lines, allow_international)
    flags = address.flags
    held = tuple(name for name in FLAG_NAMES if flags[name])
    if address.blank:
        return RecipientResult(False, None, "missing", MESSAGES["missing"], held)
    normalised = "\n".join(address.normalised_lines)
    failure = _first_failure(flags, allow_international)
    if failure is None:
        return RecipientResult(True, normalised, None, None, held)
    return RecipientResult(False, normalised, "invalid_address", failure, held)
