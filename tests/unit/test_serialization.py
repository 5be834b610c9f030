"""The message-body decoder gives exactly what kombu's own JSON decoder gives, for any text."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import random
import uuid

import pytest
from kombu.serialization import dumps as kombu_dumps
from kombu.serialization import loads as registry_loads
from kombu.serialization import registry
from kombu.utils import json as kombu_json

from tasks.csv_batches.fanout import BatchEncoder
from worker.runtime import serialization
from worker.runtime.app import app  # noqa: F401  (making the app installs the decoder)


def same(text: str | bytes) -> None:
    """Our decoder and kombu's agree: the same value (NaN compared as NaN), or both refuse."""
    try:
        expected = kombu_json.loads(text)
    except Exception as error:
        with pytest.raises(type(error)):
            serialization.loads(text)
        return
    got = serialization.loads(text)
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert repr(got) == repr(expected)


def test_the_app_decodes_message_bodies_with_it():
    assert registry._decoders["application/json"] is serialization.loads
    body = b'[[], {"batch": {"rows": [{"row_number": 1}]}}, {}]'
    assert registry_loads(body, "application/json", "utf-8") == json.loads(body)


def test_a_sink_batch_decodes_to_the_batch():
    encoder = BatchEncoder(
        {"upload_id": str(uuid.uuid4()), "service_id": str(uuid.uuid4()), "template_type": "sms"},
        ["phone number", "name"],
    )
    rows = [encoder.row(n, ("447700900123", ("07700 900123", 'Zoë "Q" \\ \x07'))) for n in (1, 2)]
    body = encoder.body(rows).encode()
    same(body)
    assert serialization.loads(body)[1]["batch"]["rows"][1]["personalisation"]["name"] == (
        'Zoë "Q" \\ \x07'
    )


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "[Infinity, -Infinity]",
        "[1e400]",
        '{"x": 123456789012345678901234567890}',
        "[-9223372036854775809, 18446744073709551616]",
        '"\\ud800"',
        '"\\u00e9\\u0000"',
        '{"a": 1, "a": 2}',
        "[" * 5000 + "]" * 5000,
        "[1] x",
        "",
        "   ",
        '{"a": }',
        b"\xff\xfe",
        bytearray(b'{"a": [1, 2.5, null, true]}'),
        memoryview(b'{"a": "b"}'),
    ],
)
def test_edge_cases_match_kombu(text):
    same(text)


def test_kombu_type_markers_are_decoded_as_kombu_does():
    # kombu's encoder writes dates, UUIDs and decimals with a "__type__" marker.
    value = {
        "when": datetime.datetime(2026, 12, 4, 17, 30, tzinfo=datetime.UTC),
        "id": uuid.UUID("6ce466d0-fd6a-11e5-82f5-e0accb9d11a6"),
        "amount": decimal.Decimal("1.10"),
    }
    _, _, text = kombu_dumps(value, serializer="json")
    assert "__type__" in text
    decoded = serialization.loads(text)
    assert decoded == kombu_json.loads(text)
    assert isinstance(decoded["when"], datetime.datetime)


def test_an_escaped_marker_is_decoded_as_kombu_does():
    text = '{"\\u005f_type__": "decimal", "__value__": "1.10"}'
    assert serialization.loads(text) == kombu_json.loads(text) == decimal.Decimal("1.10")


_CHARS = 'az AZ09"\\/\b\f\n\r\t\x00\x1f\x7fé€\u2028\U0001f600_'


def random_value(rng: random.Random, depth: int = 0) -> object:
    """A random JSON value: nested lists and objects of text (quotes, escapes, control and
    non-ASCII characters), integers up to 30 digits, floats, booleans and nulls."""
    kind = rng.randrange(8 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randint(-(10**30), 10**30) if rng.random() < 0.3 else rng.randint(-1000, 10**6)
    if kind == 3:
        return rng.choice([0.0, -0.0, 5e-324, 1.7976931348623157e308, rng.uniform(-1e9, 1e9)])
    if kind in (4, 5):
        return "".join(rng.choice(_CHARS) for _ in range(rng.randrange(12)))
    if kind == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {
        "".join(rng.choice(_CHARS) for _ in range(rng.randrange(6))): random_value(rng, depth + 1)
        for _ in range(rng.randrange(5))
    }


@pytest.mark.parametrize("seed", range(300))
def test_any_json_decodes_as_kombu_does(seed):
    rng = random.Random(seed)
    value = random_value(rng)
    for ascii_only in (False, True):
        text = json.dumps(value, ensure_ascii=ascii_only)
        same(text)
        same(text.encode())


def test_non_finite_floats_follow_kombu():
    got = serialization.loads("[NaN]")
    assert math.isnan(got[0])
