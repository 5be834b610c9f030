"""The SMS fast path re-derived from the installed phonenumbers, so upgrading it is tested.

The fast path (``recipients.fast_uk_mobile``) builds its UK-mobile table at import time from
phonenumbers' +44 metadata, but copies one thing by hand: the order in which phonenumbers'
private ``_number_type_helper`` tries the number types. These tests take that order from the
installed phonenumbers' own source and compare, then check every entry of the table against
phonenumbers' public API. If a new phonenumbers release changes either, they fail and say
what to change; otherwise upgrading is the one-line pin change (requirements.txt and
pyproject.toml).
"""

from __future__ import annotations

import ast
import inspect
import random
import textwrap

import phonenumbers
from phonenumbers import PhoneNumberType, phonenumberutil

from tasks.csv_batches.validation import recipients

# The types phonenumbers returns for each metadata description, as the helper names them.
_DESC_TYPES = {
    "premium_rate": PhoneNumberType.PREMIUM_RATE,
    "toll_free": PhoneNumberType.TOLL_FREE,
    "shared_cost": PhoneNumberType.SHARED_COST,
    "voip": PhoneNumberType.VOIP,
    "personal_number": PhoneNumberType.PERSONAL_NUMBER,
    "pager": PhoneNumberType.PAGER,
    "uan": PhoneNumberType.UAN,
    "voicemail": PhoneNumberType.VOICEMAIL,
    "fixed_line": PhoneNumberType.FIXED_LINE,
    "mobile": PhoneNumberType.MOBILE,
}


def _helper_type_order() -> list[str]:
    """The metadata descriptions ``_number_type_helper`` matches, in the order it tries them
    (``general_desc`` first, as a gate), read from the installed phonenumbers' source."""
    source = textwrap.dedent(inspect.getsource(phonenumberutil._number_type_helper))
    order: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "_is_number_matching_desc"
            and isinstance(node.args[1], ast.Attribute)
        ):
            order.append((node.args[1].lineno, node.args[1].col_offset, node.args[1].attr))
    names: list[str] = []
    for _, _, name in sorted(order):
        if name not in names:
            names.append(name)
    return names


def test_the_type_order_is_the_installed_phonenumbers_order() -> None:
    order = _helper_type_order()
    assert order[0] == "general_desc", order
    assert tuple(order[1:]) == recipients._TYPE_ORDER, (
        f"phonenumbers {phonenumbers.__version__} checks the number types in the order "
        f"{order[1:]}; set recipients._TYPE_ORDER to it (and check _FAST_ACCEPTED_TYPES)."
    )


def test_the_table_is_built_from_the_installed_metadata() -> None:
    table = recipients._UK_MOBILE_TABLE
    assert table is not None, "the +44 metadata no longer fits the fast path's model"
    assert recipients._flatten(recipients._build_uk_mobile_trie()) == table
    assert len(table) == 10**recipients._TABLE_DEPTH


def _leaves(node: bool | dict, prefix: str) -> list[tuple[str, bool]]:
    """Every (digits after the table key, verdict) leaf under a table entry."""
    if isinstance(node, bool):
        return [(prefix, node)]
    found: list[tuple[str, bool]] = []
    for digit, child in node.items():
        found.extend(_leaves(child, prefix + digit))
    return found


def _phonenumbers_says_texted(national: str) -> bool:
    """What the fast path must answer for 0 + national, from phonenumbers' public API: a UK
    number any service may text (mobile or personal; OFCOM drama numbers unless a landline)."""
    number = phonenumbers.parse("+44" + national)
    number_type = phonenumbers.number_type(number)
    if number_type in (PhoneNumberType.MOBILE, PhoneNumberType.PERSONAL_NUMBER):
        return True
    landline = (
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
        PhoneNumberType.UAN,
    )
    return number_type not in landline and national.startswith("7700")


def test_every_table_entry_agrees_with_phonenumbers() -> None:
    """Each of the 10,000 entries (and each leaf below an entry that is a deeper trie), at its
    lowest and highest completion and at a random one, against phonenumbers' public API."""
    rng = random.Random(2024)
    width = 9 - recipients._TABLE_DEPTH  # digits after the leading 7 and the table key
    mismatches = []
    for key, node in recipients._UK_MOBILE_TABLE.items():
        for path, verdict in _leaves(node, ""):
            rest = width - len(path)
            tails = {"0" * rest, "9" * rest, f"{rng.randrange(10**rest):0{rest}d}" if rest else ""}
            for tail in tails:
                national = "7" + key + path + tail
                expected = _phonenumbers_says_texted(national)
                fast = recipients.fast_uk_mobile("0" + national)
                if verdict != expected or (fast is not None) != expected:
                    mismatches.append((national, verdict, expected))
    assert mismatches == [], mismatches[:20]
