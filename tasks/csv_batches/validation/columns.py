"""Header normalisation, required columns and per-row checks for recipient CSV files.

``ColumnLayout.from_header`` does all the work that depends only on the header (which column
holds the recipient, which hold placeholders, what the personalisation keys are) once per file,
so that ``check_row`` is a handful of list and dict operations per row plus the recipient check.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Callable
from dataclasses import dataclass

from tasks.csv_batches.validation.recipients import (
    EMAIL_PATTERN,
    MAX_EMAIL_LENGTH,
    MESSAGES,
    OBSCURE_WHITESPACE,
    clean_cell,
    email_host_is_valid,
    fast_uk_mobile,
    validate_address,
    validate_sms_slow,
)

__all__ = [
    "TEMPLATE_TYPES",
    "ColumnLayout",
    "FileError",
    "RowCheck",
    "ValidRowChecker",
    "normalise_header",
]

TEMPLATE_TYPES = ("sms", "email", "letter")

_SMS_COLUMN = "phonenumber"
_EMAIL_COLUMN = "emailaddress"
_ADDRESS_LINES_1_TO_6 = tuple(f"addressline{i}" for i in range(1, 7))
_POSTCODE = "postcode"
_ADDRESS_LINE_7 = "addressline7"
_LETTER_COLUMNS = (*_ADDRESS_LINES_1_TO_6, _POSTCODE, _ADDRESS_LINE_7)
_MIN_ADDRESS_COLUMNS = 3

_EMAIL_FULLMATCH = EMAIL_PATTERN.fullmatch
# itertools.repeat never runs out, so one shared instance can feed map() on every row.
_ORDINARY_WHITESPACE_FOREVER = itertools.repeat(string.whitespace)
# Header keys ignore case, whitespace of every kind, "_" and "-".
_HEADER_DELETE = str.maketrans(dict.fromkeys(OBSCURE_WHITESPACE + "_-"))


class FileError(Exception):
    """A problem with the whole file: the job fails and nothing is dispatched."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"FileError({self.code!r}, {self.message!r})"


def normalise_header(name: str) -> str:
    """Column key: lower case with spaces (any whitespace), '_' and '-' removed."""
    return "".join(name.translate(_HEADER_DELETE).split()).lower()


@dataclass(slots=True)
class RowCheck:
    """The outcome of checking one row."""

    ok: bool
    recipient: str | None
    personalisation: dict[str, str]
    error_code: str | None
    error_message: str | None


# ``cells -> (recipient, personalisation values)`` for a valid row, None for an invalid one.
ValidRowChecker = Callable[[list[str]], "tuple[str, list[str]] | None"]


def _quote(header: str) -> str:
    return f"'{header}'"


class ColumnLayout:
    """Where things are in a file's rows, worked out from its header."""

    __slots__ = (
        "_address_indexes",
        "_address_where",
        "_headers",
        "_key_indexes",
        "_placeholder_checks",
        "_recipient_header",
        "_recipient_index",
        "_trivial_keys",
        "_value_indexes",
        "template_type",
        "width",
    )

    def __init__(
        self,
        *,
        template_type: str,
        headers: list[str],
        value_indexes: list[int],
        recipient_index: int,
        address_indexes: tuple[int, ...],
        placeholder_checks: tuple[tuple[int, str], ...],
    ) -> None:
        self.template_type = template_type
        self.width = len(headers)
        # Personalisation keys (headers as written) and the cell index each comes from.
        self._headers = tuple(headers[i] for i in value_indexes)
        self._value_indexes = tuple(value_indexes)
        # The common case (no blank header in the middle) lets check_row zip cells directly.
        self._trivial_keys = self._value_indexes == tuple(range(self.width))
        # For the personalisation dict's values in key order: a repeated header keeps its first
        # position and its last value (as ``dict(zip(...))`` does). None: the cleaned cells
        # themselves, in order (no blank header in the middle, no repeated header).
        last: dict[str, int] = {}
        for header, index in zip(self._headers, self._value_indexes, strict=True):
            last[header] = index
        key_indexes = tuple(last.values())
        self._key_indexes = None if key_indexes == tuple(range(self.width)) else key_indexes
        self._recipient_index = recipient_index
        self._recipient_header = headers[recipient_index] if recipient_index >= 0 else ""
        self._address_indexes = address_indexes
        self._address_where = "address columns " + ", ".join(
            _quote(headers[i]) for i in address_indexes
        )
        # (cell index, header as written) of each placeholder that must not be empty.
        self._placeholder_checks = placeholder_checks

    @classmethod
    def from_header(
        cls, header: list[str], *, template_type: str, placeholders: list[str]
    ) -> ColumnLayout:
        """Check the header row against the template; raises FileError."""
        if template_type not in TEMPLATE_TYPES:
            raise ValueError(f"unknown template type {template_type!r}")
        headers = list(header)
        # Trailing empty columns (e.g. "a,b,c,,,") are ignored.
        while headers and not clean_cell(headers[-1]):
            headers.pop()
        keys = [normalise_header(h) for h in headers]
        positions: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            if key:
                positions.setdefault(key, []).append(index)

        if template_type == "sms":
            recipient_keys: tuple[str, ...] = (_SMS_COLUMN,)
        elif template_type == "email":
            recipient_keys = (_EMAIL_COLUMN,)
        else:
            recipient_keys = _LETTER_COLUMNS
        duplicated = [
            headers[positions[key][0]] for key in recipient_keys if len(positions.get(key, ())) > 1
        ]
        if duplicated:
            raise FileError(
                "duplicate_recipient_column",
                "The file has more than one column called "
                + ", ".join(_quote(h) for h in duplicated),
            )

        recipient_index = -1
        address_indexes: tuple[int, ...] = ()
        if template_type == "letter":
            # address line 7 wins over postcode when both exist.
            if _ADDRESS_LINE_7 in positions:
                address_keys = (*_ADDRESS_LINES_1_TO_6, _ADDRESS_LINE_7)
            else:
                address_keys = (*_ADDRESS_LINES_1_TO_6, _POSTCODE)
            address_indexes = tuple(positions[k][0] for k in address_keys if k in positions)
            if len(address_indexes) < _MIN_ADDRESS_COLUMNS:
                raise FileError(
                    "missing_recipient_column",
                    "The file needs at least 3 address columns: 'address line 1' to "
                    "'address line 6' and 'postcode' (or 'address line 7')",
                )
        else:
            (recipient_key,) = recipient_keys
            if recipient_key not in positions:
                name = "phone number" if template_type == "sms" else "email address"
                raise FileError(
                    "missing_recipient_column", f"The file needs a column called {_quote(name)}"
                )
            recipient_index = positions[recipient_key][0]

        placeholder_checks: list[tuple[int, str]] = []
        missing: list[str] = []
        seen: set[str] = set()
        for placeholder in placeholders:
            key = normalise_header(placeholder)
            if key in seen:
                continue
            seen.add(key)
            # Recipient columns are checked as recipients; for letters the address placeholders
            # are covered by the "3 address columns" rule and the address check.
            if key in recipient_keys:
                continue
            if key not in positions:
                missing.append(placeholder)
                continue
            index = positions[key][0]
            placeholder_checks.append((index, headers[index]))
        if missing:
            raise FileError(
                "missing_placeholder_column",
                "The file is missing columns for the template's placeholders: "
                + ", ".join(_quote(p) for p in missing),
            )

        # Every named column is personalisation; a blank header in the middle cannot be
        # referenced by a placeholder and is left out.
        value_indexes = [i for i, h in enumerate(headers) if clean_cell(h)]
        layout_class = cls if cls is not ColumnLayout else _LAYOUTS[template_type]
        return layout_class(
            template_type=template_type,
            headers=headers,
            value_indexes=value_indexes,
            recipient_index=recipient_index,
            address_indexes=address_indexes,
            placeholder_checks=tuple(placeholder_checks),
        )

    @property
    def headers(self) -> tuple[str, ...]:
        """The personalisation keys: the named headers as written in the file."""
        return self._headers

    @property
    def personalisation_keys(self) -> tuple[str, ...]:
        """The keys of ``RowCheck.personalisation``, in order (a repeated header once)."""
        return tuple(dict.fromkeys(self._headers))

    def valid_row_checker(
        self,
        *,
        allow_international_sms: bool = False,
        allow_international_letters: bool = False,
        allow_sms_to_uk_landline: bool = False,
    ) -> ValidRowChecker:
        """A function ``cells -> (recipient, values) | None``: the verdict of ``check_row``
        with these options, without building a ``RowCheck``, a dict or an error message.

        ``values`` are the values of ``check_row(cells).personalisation``, in the order of
        ``personalisation_keys``. The dispatch pass of a job calls this on every row; the
        per-type versions below are ``check_row`` with everything it does for invalid rows
        left out (tests compare the two on the corpus and on generated rows).
        """
        check_row = self.check_row
        options = {
            "allow_international_sms": allow_international_sms,
            "allow_international_letters": allow_international_letters,
            "allow_sms_to_uk_landline": allow_sms_to_uk_landline,
        }

        def check(cells: list[str]) -> tuple[str, list[str]] | None:
            result = check_row(cells, **options)
            if not result.ok:
                return None
            return result.recipient or "", list(result.personalisation.values())

        return check

    def _cleaned(self, cells: list[str]) -> list[str]:
        """Cleaned cell values, exactly ``width`` of them (missing cells are empty)."""
        width = self.width
        if len(cells) != width:
            if len(cells) < width:
                cells = [*cells, *([""] * (width - len(cells)))]
            else:
                cells = cells[:width]  # extra cells beyond the header are ignored
        if "".join(cells).isascii():
            # No obscure whitespace possible: strip in C (map over a shared endless repeat).
            return list(map(str.strip, cells, _ORDINARY_WHITESPACE_FOREVER))
        return list(map(clean_cell, cells))

    def check_row(
        self,
        cells: list[str],
        *,
        allow_international_sms: bool = False,
        allow_international_letters: bool = False,
        allow_sms_to_uk_landline: bool = False,
    ) -> RowCheck:
        """Clean one row's cells and check its recipient and placeholders.

        ``from_header`` returns a subclass specialised for the template type; this generic
        version serves a layout built directly.
        """
        implementation = _LAYOUTS[self.template_type].check_row
        return implementation(
            self,
            cells,
            allow_international_sms=allow_international_sms,
            allow_international_letters=allow_international_letters,
            allow_sms_to_uk_landline=allow_sms_to_uk_landline,
        )

    def _values(self, cells: list[str]) -> tuple[list[str], dict[str, str]]:
        """Cleaned cell values (exactly ``width`` of them) and the personalisation dict."""
        values = self._cleaned(cells)
        if self._trivial_keys:
            return values, dict(zip(self._headers, values, strict=False))
        return values, {
            h: values[i] for h, i in zip(self._headers, self._value_indexes, strict=False)
        }

    def _missing_placeholder(self, values: list[str]) -> str | None:
        """Message for the first empty placeholder cell, else None."""
        for index, header in self._placeholder_checks:
            if not values[index]:
                return f"Missing value in column {_quote(header)}"
        return None

    def _fail(self, raw: str, personalisation: dict[str, str], code: str | None) -> RowCheck:
        code = code or "invalid_number"
        header = _quote(self._recipient_header)
        if code == "missing":
            message = f"Missing value in column {header}"
        else:
            message = f"{MESSAGES[code]} (column {header})"
        return RowCheck(False, raw, personalisation, code, message)


# The per-type layouts.  check_row is the hot loop of a CSV job, so each one is written out in
# full for its type (the cell cleaning inlined) rather than sharing a generic body: at a few
# microseconds a row, a function call or a branch is a measurable share.


class _SmsLayout(ColumnLayout):
    __slots__ = ()

    def check_row(
        self,
        cells: list[str],
        *,
        allow_international_sms: bool = False,
        allow_international_letters: bool = False,
        allow_sms_to_uk_landline: bool = False,
    ) -> RowCheck:
        """Clean one row's cells and check its phone number and placeholders."""
        if len(cells) == self.width and "".join(cells).isascii():
            values = list(map(str.strip, cells, _ORDINARY_WHITESPACE_FOREVER))
            if self._trivial_keys:
                personalisation = dict(zip(self._headers, values, strict=False))
            else:
                personalisation = {
                    h: values[i] for h, i in zip(self._headers, self._value_indexes, strict=False)
                }
        else:
            values, personalisation = self._values(cells)
        raw = values[self._recipient_index]
        recipient = fast_uk_mobile(raw)
        if recipient is None:
            if not raw:
                return self._fail(raw, personalisation, "missing")
            result = validate_sms_slow(
                raw,
                allow_international=allow_international_sms,
                allow_uk_landline=allow_sms_to_uk_landline,
            )
            if not result.valid:
                return self._fail(raw, personalisation, result.code)
            recipient = result.normalised
        for index, header in self._placeholder_checks:
            if not values[index]:
                message = f"Missing value in column {_quote(header)}"
                return RowCheck(False, raw, personalisation, "missing_placeholder", message)
        return RowCheck(True, recipient, personalisation, None, None)

    def valid_row_checker(
        self,
        *,
        allow_international_sms: bool = False,
        allow_international_letters: bool = False,
        allow_sms_to_uk_landline: bool = False,
    ) -> ValidRowChecker:
        """``check_row``'s verdict on an SMS row, lean (see ``ColumnLayout``)."""
        width = self.width
        recipient_index = self._recipient_index
        placeholder_indexes = tuple(index for index, _ in self._placeholder_checks)
        key_indexes = self._key_indexes
        cleaned = self._cleaned
        strip = str.strip
        whitespace = _ORDINARY_WHITESPACE_FOREVER

        def check(cells: list[str]) -> tuple[str, list[str]] | None:
            if len(cells) == width and "".join(cells).isascii():
                values = list(map(strip, cells, whitespace))
            else:
                values = cleaned(cells)
            raw = values[recipient_index]
            recipient = fast_uk_mobile(raw)
            if recipient is None:
                if not raw:
                    return None
                result = validate_sms_slow(
                    raw,
                    allow_international=allow_international_sms,
                    allow_uk_landline=allow_sms_to_uk_landline,
                )
                if not result.valid:
                    return None
                recipient = result.normalised
            for index in placeholder_indexes:
                if not values[index]:
                    return None
            if key_indexes is not None:
                values = [values[i] for i in key_indexes]
            return recipient, values

        return check


class _EmailLayout(ColumnLayout):
    __slots__ = ()

    def check_row(
        self,
        cells: list[str],
        *,
        allow_international_sms: bool = False,
        allow_international_letters: bool = False,
        allow_sms_to_uk_landline: bool = False,
    ) -> RowCheck:
        """Clean one row's cells and check its email address and placeholders."""
        if len(cells) == self.width and "".join(cells).isascii():
            values = list(map(str.strip, cells, _ORDINARY_WHITESPACE_FOREVER))
            if self._trivial_keys:
                personalisation = dict(zip(self._headers, values, strict=False))
            else:
                personalisation = {
                    h: values[i] for h, i in zip(self._headers, self._value_indexes, strict=False)
                }
        else:
            values, personalisation = self._values(cells)
        raw = values[self._recipient_index]
        # email_is_valid, inlined: the call is a measurable share of an email row.
        match = _EMAIL_FULLMATCH(raw)
        if (
            match is None
            or len(raw) > MAX_EMAIL_LENGTH
            or ".." in raw
            or not email_host_is_valid(match[1])
        ):
            return self._fail(raw, personalisation, "invalid_email" if raw else "missing")
        for index, header in self._placeholder_checks:
            if not values[index]:
                message = f"Missing value in column {_quote(header)}"
                return RowCheck(False, raw, personalisation, "missing_placeholder", message)
        return RowCheck(True, raw, personalisation, None, None)

    def valid_row_checker(
        self,
        *,
        allow_international_sms: bool = False,
        allow_international_letters: bool = False,
        allow_sms_to_uk_landline: bool = False,
    ) -> ValidRowChecker:
        """``check_row``'s verdict on an email row, lean (see ``ColumnLayout``)."""
        width = self.width
        recipient_index = self._recipient_index
        placeholder_indexes = tuple(index for index, _ in self._placeholder_checks)
        key_indexes = self._key_indexes
        cleaned = self._cleaned
        strip = str.strip
        whitespace = _ORDINARY_WHITESPACE_FOREVER
        fullmatch = _EMAIL_FULLMATCH

        def check(cells: list[str]) -> tuple[str, list[str]] | None:
            if len(cells) == width and "".join(cells).isascii():
                values = list(map(strip, cells, whitespace))
            else:
                values = cleaned(cells)
            raw = values[recipient_index]
            match = fullmatch(raw)
            if (
                match is None
                or len(raw) > MAX_EMAIL_LENGTH
                or ".." in raw
                or not email_host_is_valid(match[1])
            ):
                return None
            for index in placeholder_indexes:
                if not values[index]:
                    return None
            if key_indexes is not None:
                values = [values[i] for i in key_indexes]
            return raw, values

        return check


class _LetterLayout(ColumnLayout):
    __slots__ = ()

    def check_row(
        self,
        cells: list[str],
        *,
        allow_international_sms: bool = False,
        allow_international_letters: bool = False,
        allow_sms_to_uk_landline: bool = False,
    ) -> RowCheck:
        """Clean one row's cells and check its address and placeholders."""
        values, personalisation = self._values(cells)
        lines = [values[i] for i in self._address_indexes]
        result = validate_address(lines, allow_international=allow_international_letters)
        if not result.valid:
            raw = "\n".join(line for line in lines if line)
            reason = "Missing address" if result.code == "missing" else result.message
            message = f"{reason} ({self._address_where})"
            return RowCheck(False, raw, personalisation, result.code, message)
        message = self._missing_placeholder(values)
        if message is not None:
            raw = "\n".join(line for line in lines if line)
            return RowCheck(False, raw, personalisation, "missing_placeholder", message)
        return RowCheck(True, result.normalised, personalisation, None, None)


_LAYOUTS: dict[str, type[ColumnLayout]] = {
    "sms": _SmsLayout,
    "email": _EmailLayout,
    "letter": _LetterLayout,
}
