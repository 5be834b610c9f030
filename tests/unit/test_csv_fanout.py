"""The dispatch pass's fast paths, proven equal to the plain ones they replace.

* ``BatchEncoder`` writes sink batches as JSON text; parsed, it must equal ``json.dumps`` of the
  dict batch, notification ids included (``uuid5``).
* ``ColumnLayout.valid_row_checker`` gives ``check_row``'s verdict without a ``RowCheck``; it
  must agree with ``check_row`` (valid or not, recipient, personalisation values) on every row.
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import pytest

from tasks.csv_batches.fanout import BatchEncoder, notification_id_factory
from tasks.csv_batches.validation.columns import ColumnLayout
from tasks.csv_batches.validation.recipients import OBSCURE_WHITESPACE

CORPUS_PATH = Path(__file__).resolve().parent.parent / "data" / "recipients.jsonl"
CORPUS = [json.loads(line) for line in CORPUS_PATH.read_text(encoding="utf-8").splitlines()]
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
# Strings that need JSON escaping, or could upset a % template, or are not ASCII.
AWKWARD = [
    "",
    " ",
    '"',
    'say "hi"',
    "back\\slash",
    "tab\there",
    "new\nline",
    "cr\rlf\r\n",
    "\x00\x01\x1f\x7f",
    "%",
    "%s",
    "%d%%s%",
    "{}",
    "caf\u00e9",
    "\u2028\u2029",
    "\U0001f600 emoji",
    "\ufeffbom",
    "\u00a0nbsp\u200b",
    "</script>",
    "null",
    "0",
]


def _base(upload_id: str, **extra: object) -> dict:
    return {
        "service_id": str(uuid.uuid4()),
        "upload_id": upload_id,
        "template_id": str(uuid.uuid4()),
        "template_type": "sms",
        "sender_id": None,
        **extra,
    }


def _dict_row(upload_id: str, row_number: int, recipient: str, personalisation: dict) -> dict:
    return {
        "notification_id": str(uuid.uuid5(uuid.UUID(upload_id), str(row_number))),
        "row_number": row_number,
        "recipient": recipient,
        "personalisation": personalisation,
    }


# --- BatchEncoder -------------------------------------------------------------------------------


def test_encoded_notification_ids_equal_uuid5_on_many_row_numbers():
    for _ in range(3):
        upload_id = str(uuid.uuid4())
        encoder = BatchEncoder(_base(upload_id), ["name"])
        factory = notification_id_factory(upload_id)
        numbers = [*range(1, 5_001), 99_999, 100_000, 10**6, 10**7, 2**31, 10**12]
        for n in numbers:
            expected = str(uuid.uuid5(uuid.UUID(upload_id), str(n)))
            assert json.loads(encoder.row(n, ("r", ["v"])))["notification_id"] == expected
            assert factory(n) == expected


def test_an_encoded_batch_parses_to_the_dict_batch_with_awkward_strings():
    rng = random.Random(7)
    upload_id = str(uuid.uuid4())
    keys = ["phone number", *AWKWARD[1:], "name"]
    base = _base(upload_id, sender_id=str(uuid.uuid4()), template_type="letter")
    encoder = BatchEncoder(base, keys)
    rows, expected = [], []
    for row_number in range(1, 1001):
        values = [rng.choice(AWKWARD) + rng.choice(AWKWARD) for _ in keys]
        recipient = rng.choice(AWKWARD) + "\n" + rng.choice(AWKWARD)
        rows.append(encoder.row(row_number, (recipient, values)))
        expected.append(
            _dict_row(upload_id, row_number, recipient, dict(zip(keys, values, strict=True)))
        )
    body = json.loads(encoder.body(rows))
    assert body == [[], {"batch": {**base, "rows": expected}}, EMBED]


def test_a_repeated_key_keeps_its_first_place_as_a_dict_does():
    upload_id = str(uuid.uuid4())
    layout = ColumnLayout.from_header(
        ["phone number", "name", "ref", "name"], template_type="sms", placeholders=[]
    )
    encoder = BatchEncoder(_base(upload_id), layout.personalisation_keys)
    cells = ["07700900123", "first", "r", "second"]
    check = layout.check_row(cells)
    valid = layout.valid_row_checker()(cells)
    row = json.loads(encoder.row(5, valid))
    assert (
        row["personalisation"]
        == check.personalisation
        == {"phone number": cells[0]}
        | {
            "name": "second",
            "ref": "r",
        }
    )
    assert list(row["personalisation"]) == list(check.personalisation)


def test_an_empty_batch_body_and_one_row():
    upload_id = str(uuid.uuid4())
    base = _base(upload_id)
    encoder = BatchEncoder(base, [])
    assert json.loads(encoder.body([])) == [[], {"batch": {**base, "rows": []}}, EMBED]
    one = json.loads(encoder.body([encoder.row(1, ("447700900123", []))]))
    assert one[1]["batch"]["rows"] == [_dict_row(upload_id, 1, "447700900123", {})]


# --- valid_row_checker --------------------------------------------------------------------------

HEADERS = {
    "sms": [
        ["phone number"],
        ["phone number", "name", "ref"],
        ["Name", "Phone_Number"],
        ["phone number", "name", "", "ref"],  # a blank header in the middle
        ["phone number", "name", "name", "Name"],  # repeated headers
    ],
    "email": [
        ["email address"],
        ["email address", "name", "ref"],
        ["Ref", "", "Email-Address", "name", "ref"],
    ],
    "letter": [
        ["address line 1", "address line 2", "address line 3", "postcode", "name"],
        ["Address_Line_1", "address line 2", "", "address line 7", "postcode", "name", "name"],
    ],
}


def _recipient_values(kind: str) -> list:
    values = [c["value"] for c in CORPUS if c["type"] == kind and "value" in c]
    if kind == "sms":
        values += ["07700900123", "+44 7700 900123", "(07700) 900-123", "447700900123"]
    return values


def _rows_for(kind: str, header: list[str], rng: random.Random) -> list[list[str]]:
    layout = ColumnLayout.from_header(header, template_type=kind, placeholders=[])
    rows: list[list[str]] = []
    if kind == "letter":
        lines = [c["lines"] for c in CORPUS if c["type"] == "letter"]
        indexes = [i for i, h in enumerate(header) if h]
        for address in lines:
            cells = [rng.choice(AWKWARD) for _ in header]
            for index, line in zip(indexes, address, strict=False):
                cells[index] = line
            rows.append(cells)
        return rows
    recipient_index = next(
        i
        for i, h in enumerate(header)
        if h.replace("_", " ").replace("-", " ").lower() in ("phone number", "email address")
    )
    for value in _recipient_values(kind):
        cells = [rng.choice(["Ann", "", " x ", "\u00a0y\u200b", *AWKWARD]) for _ in header]
        cells[recipient_index] = value
        shape = rng.random()
        if shape < 0.1:
            cells = cells[: rng.randrange(len(cells) + 1)]  # short rows
        elif shape < 0.2:
            cells = [*cells, "extra", "more"]  # long rows
        elif shape < 0.3:
            cells = [f"{OBSCURE_WHITESPACE[0]}{c} " for c in cells]
        rows.append(cells)
    assert layout.width == len(header)
    return rows


KIND_OPTIONS = {
    "sms": [
        {},
        {"allow_international_sms": True},
        {"allow_sms_to_uk_landline": True},
        {"allow_international_sms": True, "allow_sms_to_uk_landline": True},
    ],
    "email": [{}],
    "letter": [{}, {"allow_international_letters": True}],
}


@pytest.mark.parametrize("kind", ["sms", "email", "letter"])
def test_valid_row_checker_agrees_with_check_row(kind: str) -> None:
    """Every corpus value under the first header; a sample under the other layouts (blank and
    repeated headers, placeholders, short and long rows, obscure whitespace)."""
    rng = random.Random(kind)
    compared = valid_seen = invalid_seen = 0
    for number, header in enumerate(HEADERS[kind]):
        rows = _rows_for(kind, header, rng)
        named = [h for h in header if h and h.lower() not in ("phone number", "email address")]
        for placeholders in ([], named):
            if number or placeholders:
                rows = rng.sample(rows, min(len(rows), 150))
            layout = ColumnLayout.from_header(
                header, template_type=kind, placeholders=list(placeholders)
            )
            for options in KIND_OPTIONS[kind]:
                check_valid = layout.valid_row_checker(**options)
                for cells in rows:
                    check = layout.check_row(list(cells), **options)
                    got = check_valid(list(cells))
                    if check.ok:
                        valid_seen += 1
                        assert got == (check.recipient, list(check.personalisation.values()))
                    else:
                        invalid_seen += 1
                        assert got is None, (cells, check)
                    compared += 1
    assert valid_seen > 100 and invalid_seen > 100, (valid_seen, invalid_seen)
    assert compared > 1000


def test_personalisation_keys_are_the_dict_keys():
    layout = ColumnLayout.from_header(
        ["phone number", "b", "", "a", "b"], template_type="sms", placeholders=[]
    )
    check = layout.check_row(["07700900123", "1", "2", "3", "4"])
    assert layout.personalisation_keys == tuple(check.personalisation) == ("phone number", "b", "a")


def test_a_thousand_columns_with_braces_and_quotes_in_their_names():
    """The row function is compiled per file: names never reach its source."""
    upload_id = str(uuid.uuid4())
    keys = [f"col {n} {{x}}'\"\\{n}%s" for n in range(1000)]
    encoder = BatchEncoder(_base(upload_id), keys)
    values = [f"v{n}}}{{" for n in range(1000)]
    row = json.loads(encoder.row(7, ("r", values)))
    assert row == _dict_row(upload_id, 7, "r", dict(zip(keys, values, strict=True)))
    with pytest.raises(ValueError):
        encoder.row(8, ("r", values[:-1]))  # never a silent mismatch
