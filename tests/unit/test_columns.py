"""Header normalisation, file-level errors and per-row checks
(tasks.csv_batches.validation.columns)."""

from __future__ import annotations

import pytest

from tasks.csv_batches.validation.columns import ColumnLayout, FileError, RowCheck, normalise_header


def sms_layout(*header: str, placeholders: tuple[str, ...] = ()) -> ColumnLayout:
    return ColumnLayout.from_header(
        list(header), template_type="sms", placeholders=list(placeholders)
    )


def email_layout(*header: str, placeholders: tuple[str, ...] = ()) -> ColumnLayout:
    return ColumnLayout.from_header(
        list(header), template_type="email", placeholders=list(placeholders)
    )


def letter_layout(*header: str, placeholders: tuple[str, ...] = ()) -> ColumnLayout:
    return ColumnLayout.from_header(
        list(header), template_type="letter", placeholders=list(placeholders)
    )


LETTER_HEADER = ("address line 1", "address line 2", "address line 3", "postcode", "name")

# ---------------------------------------------------------------------------------------------
# Header normalisation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "phone number",
        "Phone_Number",
        "PHONE-NUMBER",
        " phone  number ",
        "phonenumber",
        "Phone-_ Number",
    ],
)
def test_normalise_header_variants(name: str) -> None:
    assert normalise_header(name) == "phonenumber"


def test_normalise_header_ignores_obscure_whitespace() -> None:
    assert normalise_header("\ufeffEmail\u00a0address\u200b") == "emailaddress"


@pytest.mark.parametrize("header", ["Phone_Number", "PHONE NUMBER", "phone-number"])
def test_recipient_column_found_whatever_the_spelling(header: str) -> None:
    layout = sms_layout("name", header)
    check = layout.check_row(["Ann", "07700 900123"])
    assert check.ok
    assert check.recipient == "447700900123"
    assert check.personalisation == {"name": "Ann", header: "07700 900123"}


def test_placeholders_match_headers_the_same_way() -> None:
    layout = email_layout("Email Address", "First_Name", placeholders=("first name",))
    assert layout.check_row(["a@example.com", "Ann"]).ok
    check = layout.check_row(["a@example.com", ""])
    assert check.error_code == "missing_placeholder"
    assert "First_Name" in check.error_message


# ---------------------------------------------------------------------------------------------
# File-level errors
# ---------------------------------------------------------------------------------------------


def test_missing_recipient_column_sms() -> None:
    with pytest.raises(FileError) as raised:
        sms_layout("name", "email address")
    assert raised.value.code == "missing_recipient_column"
    assert "phone number" in raised.value.message


def test_missing_recipient_column_email() -> None:
    with pytest.raises(FileError) as raised:
        email_layout("phone number")
    assert raised.value.code == "missing_recipient_column"


def test_missing_recipient_column_letter_needs_three_address_columns() -> None:
    with pytest.raises(FileError) as raised:
        letter_layout("address line 1", "postcode", "name")
    assert raised.value.code == "missing_recipient_column"
    # Three of lines 1-6 + postcode is enough, whichever they are.
    assert letter_layout("address line 2", "address line 5", "postcode")


def test_address_line_7_columns_count_instead_of_postcode() -> None:
    # With address line 7 present the postcode column is ordinary personalisation and does
    # not count towards the three.
    with pytest.raises(FileError) as raised:
        letter_layout("address line 1", "address line 7", "postcode")
    assert raised.value.code == "missing_recipient_column"
    assert letter_layout("address line 1", "address line 2", "address line 7", "postcode")


@pytest.mark.parametrize(
    ("template_type", "header"),
    [
        ("sms", ["phone number", "Phone_Number"]),
        ("email", ["email address", "name", "EMAIL ADDRESS"]),
        ("letter", ["address line 1", "address line 2", "Address_Line_1", "postcode"]),
    ],
)
def test_duplicate_recipient_column(template_type: str, header: list[str]) -> None:
    with pytest.raises(FileError) as raised:
        ColumnLayout.from_header(header, template_type=template_type, placeholders=[])
    assert raised.value.code == "duplicate_recipient_column"


def test_duplicate_non_recipient_columns_are_allowed() -> None:
    layout = sms_layout("phone number", "name", "Name")
    check = layout.check_row(["07700900123", "a", "b"])
    assert check.ok
    assert check.personalisation == {"phone number": "07700900123", "name": "a", "Name": "b"}


def test_missing_placeholder_column_lists_every_missing_placeholder() -> None:
    with pytest.raises(FileError) as raised:
        sms_layout("phone number", "name", placeholders=("name", "reference", "date"))
    assert raised.value.code == "missing_placeholder_column"
    assert "reference" in raised.value.message
    assert "date" in raised.value.message
    assert str(raised.value) == raised.value.message


def test_recipient_placeholder_needs_no_extra_column() -> None:
    layout = sms_layout("phone number", placeholders=("phone number", "Phone_Number"))
    assert layout.check_row(["07700900123"]).ok


def test_letter_address_placeholders_are_covered_by_the_address_rule() -> None:
    layout = letter_layout(*LETTER_HEADER, placeholders=("address line 1", "address line 6"))
    check = layout.check_row(["Flat 2", "1 Test Street", "London", "SW1A 1AA", "Ann"])
    assert check.ok


def test_unknown_template_type() -> None:
    with pytest.raises(ValueError, match="template type"):
        ColumnLayout.from_header(["phone number"], template_type="fax", placeholders=[])


def test_trailing_empty_header_columns_are_ignored() -> None:
    layout = sms_layout("phone number", "name", "", " ", "")
    assert layout.width == 2
    check = layout.check_row(["07700900123", "Ann", "", "", "junk"])
    assert check.ok
    assert check.personalisation == {"phone number": "07700900123", "name": "Ann"}


def test_blank_header_in_the_middle_is_left_out_of_personalisation() -> None:
    layout = sms_layout("phone number", "", "name")
    check = layout.check_row(["07700900123", "ignored", "Ann"])
    assert check.personalisation == {"phone number": "07700900123", "name": "Ann"}


# ---------------------------------------------------------------------------------------------
# Row checks
# ---------------------------------------------------------------------------------------------


def test_ok_row_personalisation_keyed_by_header_as_written_with_cleaned_values() -> None:
    layout = sms_layout("Phone Number", "First_Name", placeholders=("first name",))
    check = layout.check_row(["\ufeff +44 7700 900123 ", "\u200bAnn\u00a0 "])
    assert check == RowCheck(
        ok=True,
        recipient="447700900123",
        personalisation={"Phone Number": "+44 7700 900123", "First_Name": "Ann"},
        error_code=None,
        error_message=None,
    )


def test_missing_recipient() -> None:
    layout = sms_layout("phone number", "name")
    check = layout.check_row(["  ", "Ann"])
    assert not check.ok
    assert check.error_code == "missing"
    assert "phone number" in check.error_message
    assert check.recipient == ""


def test_invalid_recipient_uses_its_code_and_hides_the_value() -> None:
    layout = sms_layout("phone number")
    check = layout.check_row([" 07400 90012 "])
    assert not check.ok
    assert check.error_code == "invalid_number"
    assert check.recipient == "07400 90012"  # raw, cleaned
    assert "07400" not in check.error_message
    assert "phone number" in check.error_message


@pytest.mark.parametrize(
    ("value", "kwargs", "code"),
    [
        ("+1 202 555 0123", {}, "not_a_uk_mobile"),
        ("020 7946 0000", {}, "not_a_uk_mobile"),
        ("07700 900 12x", {}, "unknown_character"),
        ("077009001234567", {}, "too_long"),
    ],
)
def test_sms_row_codes(value: str, kwargs: dict, code: str) -> None:
    check = sms_layout("phone number").check_row([value], **kwargs)
    assert check.error_code == code


def test_sms_permissions() -> None:
    layout = sms_layout("phone number")
    assert layout.check_row(["+1 202 555 0123"], allow_international_sms=True).recipient == (
        "12025550123"
    )
    assert layout.check_row(["020 7946 0000"], allow_sms_to_uk_landline=True).recipient == (
        "442079460000"
    )


def test_email_rows() -> None:
    layout = email_layout("email address", "name", placeholders=("name",))
    ok = layout.check_row([" Someone@Example.com ", "Ann"])
    assert ok.ok and ok.recipient == "Someone@Example.com"
    bad = layout.check_row(["someone@localhost", "Ann"])
    assert bad.error_code == "invalid_email"
    assert "someone" not in bad.error_message
    missing = layout.check_row(["", "Ann"])
    assert missing.error_code == "missing"


def test_missing_placeholder_row() -> None:
    layout = sms_layout("phone number", "name", "ref", placeholders=("name", "ref"))
    check = layout.check_row(["07700900123", "Ann", "  "])
    assert not check.ok
    assert check.error_code == "missing_placeholder"
    assert "ref" in check.error_message
    assert check.recipient == "07700900123"


def test_recipient_error_wins_over_missing_placeholder() -> None:
    layout = sms_layout("phone number", "name", placeholders=("name",))
    assert layout.check_row(["", ""]).error_code == "missing"


def test_short_row_cells_are_empty() -> None:
    layout = sms_layout("phone number", "name", "ref", placeholders=("ref",))
    check = layout.check_row(["07700900123"])
    assert check.error_code == "missing_placeholder"
    assert check.personalisation == {"phone number": "07700900123", "name": "", "ref": ""}
    assert sms_layout("phone number", "name").check_row(["07700900123"]).ok


def test_blank_row_is_missing() -> None:
    assert sms_layout("phone number", "name").check_row([]).error_code == "missing"


def test_extra_cells_are_ignored() -> None:
    check = sms_layout("phone number").check_row(["07700900123", "extra", "more"])
    assert check.ok
    assert check.personalisation == {"phone number": "07700900123"}


def test_letter_rows() -> None:
    layout = letter_layout(*LETTER_HEADER, placeholders=("name",))
    ok = layout.check_row(["Flat 2", "1 Test Street", "London", "sw1a1aa", "Ann"])
    assert ok.ok
    assert ok.recipient == "Flat 2\n1 Test Street\nLondon\nSW1A 1AA"
    assert ok.personalisation["postcode"] == "sw1a1aa"

    bad = layout.check_row(["Flat 2", "1 Test Street", "London", "XX1 1XX", "Ann"])
    assert bad.error_code == "invalid_address"
    assert bad.error_message.startswith("Last line of the address must be a real UK postcode")
    assert "postcode" in bad.error_message
    assert bad.recipient == "Flat 2\n1 Test Street\nLondon\nXX1 1XX"

    short = layout.check_row(["Flat 2", "", "", "SW1A 1AA", "Ann"])
    assert short.error_code == "invalid_address"
    assert "at least 3 lines" in short.error_message

    missing = layout.check_row(["", " ", "", "", "Ann"])
    assert missing.error_code == "missing"

    no_name = layout.check_row(["Flat 2", "1 Test Street", "London", "SW1A 1AA", ""])
    assert no_name.error_code == "missing_placeholder"


def test_international_letters() -> None:
    layout = letter_layout("address line 1", "address line 2", "address line 3", "address line 4")
    cells = ["Flat 2", "1 Rue de Test", "Paris", "France"]
    assert layout.check_row(cells).error_code == "invalid_address"
    check = layout.check_row(cells, allow_international_letters=True)
    assert check.ok
    assert check.recipient == "Flat 2\n1 Rue de Test\nParis\nFrance"


def test_address_line_7_wins_over_postcode() -> None:
    layout = letter_layout(
        "address line 1", "address line 2", "address line 3", "postcode", "address line 7"
    )
    check = layout.check_row(["Flat 2", "1 Test Street", "London", "not used", "SW1A 1AA"])
    assert check.ok
    assert check.recipient == "Flat 2\n1 Test Street\nLondon\nSW1A 1AA"
    assert check.personalisation["postcode"] == "not used"


def test_base_class_check_row_dispatches_by_template_type() -> None:
    layout = sms_layout("phone number")
    assert ColumnLayout.check_row(layout, ["07700900123"]).recipient == "447700900123"
    assert isinstance(layout, ColumnLayout)
