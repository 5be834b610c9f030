"""Test-only yardsticks for the CSV workflow's optimised paths (never imported by production).

* ``ReferenceReader``: ``CsvReader`` reading its lines with ``readline(limit)``, one at a time,
  as it did before lines were split from blocks; tests compare the two on random files.
* ``validate_sms_reference``: the SMS rules of docs/validation.md with phonenumbers, step by
  step and unoptimised; tests compare the fast path and the optimised phonenumbers path with it.
"""

from __future__ import annotations

from collections.abc import Iterator

import phonenumbers
from phonenumbers import ValidationResult

from tasks.csv_batches.reader import CsvReader
from tasks.csv_batches.validation.recipients import (
    _ALLOWED_SMS_CHARS,
    _ALLOWED_TYPES,
    _FAIL,
    _POSSIBILITY_CODES,
    _TV_NUMBER,
    _UK_COUNTRY_CODE,
    _UK_LANDLINE_TYPES,
    SUPPORTED_COUNTRY_CODES,
    RecipientResult,
    _thoroughly_normalise,
    clean_cell,
)


class ReferenceReader(CsvReader):
    """``CsvReader`` with ``readline(limit)`` itself as the line source, line by line."""

    def _block_lines(self, limit: int) -> Iterator[list[str]]:
        readline = self._text.readline
        line = readline(limit)
        while line:
            yield [line]
            line = readline(limit)


def _reference_attempt(value: str) -> tuple[str | None, phonenumbers.PhoneNumber | None]:
    """Steps 1-3 of the SMS rules (docs/validation.md) on one spelling, literally.

    Returns (code, None) or (None, number).
    """
    if not _ALLOWED_SMS_CHARS.issuperset(value):
        return "unknown_character", None
    if value == "":
        return "too_short", None
    try:
        number = phonenumbers.parse(value, "GB")
    except phonenumbers.NumberParseException:
        return "invalid_number", None
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != ValidationResult.IS_POSSIBLE:
        # Spreadsheets drop a leading '+': retry the raw value as an international number.
        forced = None
        try:
            candidate = phonenumbers.parse("+" + value)
        except phonenumbers.NumberParseException:
            candidate = None
        if candidate is not None and phonenumbers.is_possible_number(candidate):
            forced = candidate
        if forced is None:
            return _POSSIBILITY_CODES.get(reason, "invalid_number"), None
        number = forced
    if not (
        phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in _ALLOWED_TYPES
    ) and not _TV_NUMBER.match(str(number.national_number)):
        return "invalid_number", None
    return None, number


def validate_sms_reference(
    value: str, *, allow_international: bool = False, allow_uk_landline: bool = False
) -> RecipientResult:
    """The SMS rules of docs/validation.md with phonenumbers, step by step and unoptimised.

    The yardstick for the optimised paths (tests compare them on the corpus and on generated
    numbers); too slow for production use.
    """
    value = clean_cell(value)
    if not value:
        return _FAIL["missing"]
    code, number = _reference_attempt(value)
    if code is not None:
        code, number = _reference_attempt(_thoroughly_normalise(value))
        if code is not None:
            return _FAIL[code]
    assert number is not None
    country_code = number.country_code
    if not allow_international and country_code != _UK_COUNTRY_CODE:
        return _FAIL["not_a_uk_mobile"]
    if (
        country_code == _UK_COUNTRY_CODE
        and not allow_uk_landline
        and phonenumbers.number_type(number) in _UK_LANDLINE_TYPES
    ):
        return _FAIL["not_a_uk_mobile"]
    if country_code not in SUPPORTED_COUNTRY_CODES:
        return _FAIL["unsupported_country_code"]
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return RecipientResult(True, e164[1:], None, None)
