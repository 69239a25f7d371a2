import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunky_redis.core.http import (
    _PLAIN_FILENAME_RE,
    ByteRange,
    clean_filename,
    filename_from_content_disposition,
    is_upload_id,
    parse_content_range,
    parsed_filename,
)
from chunky_redis.exceptions import BadContentRange


@pytest.mark.parametrize(
    "value, expected",
    [
        ("bytes 0-0/1", ByteRange(0, 0, 1)),
        ("bytes 0-9/10", ByteRange(0, 9, 10)),
        (" bytes 10-19/100 ", ByteRange(10, 19, 100)),
        (
            "bytes 1073741824-1082130431/10737418240",
            ByteRange(1 << 30, (1 << 30) + (8 << 20) - 1, 10 << 30),
        ),
    ],
)
def test_valid_ranges(value, expected):
    assert parse_content_range(value) == expected
    assert expected.length == expected.end - expected.start + 1


@pytest.mark.parametrize(
    "value",
    [
        "",
        "bytes",
        "bytes 0-9",
        "bytes 0-9/*",
        "bytes */10",
        "bytes=0-9/10",
        "bits 0-9/10",
        "bytes 9-0/10",
        "bytes 0-10/10",
        "bytes 0-9/9",
        "bytes -1-9/10",
        "bytes +0-9/10",
        "bytes 0x0-9/10",
        "bytes 0-9/10 extra",
        "bytes 0-99999999999999999999/100000000000000000000",
        "bytes ０-9/10",
    ],
)
def test_invalid_ranges(value):
    with pytest.raises(BadContentRange):
        parse_content_range(value)


@pytest.mark.parametrize(
    "header, name",
    [
        ('attachment; filename="a.txt"', "a.txt"),
        ("attachment; filename=plain.bin", "plain.bin"),
        ("attachment; filename*=UTF-8''caf%C3%A9.txt", "café.txt"),
        ('attachment; filename="../../etc/passwd"', "passwd"),
        ('attachment; filename="C:\\\\dir\\\\x.doc"', "x.doc"),
        ("attachment; filename=\"cafe.txt\"; filename*=UTF-8''caf%C3%A9.txt", "café.txt"),
        (
            "attachment; filename*=utf-8''%E2%82%AC%20rates.pdf; filename=\"rates.pdf\"",
            "€ rates.pdf",
        ),
        ("attachment; filename=\"ok.txt\"; filename*=UTF-8''%FF%FE", "ok.txt"),
        ("attachment", ""),
        ("", ""),
    ],
)
def test_filename_from_content_disposition(header, name):
    assert filename_from_content_disposition(header) == name


@pytest.mark.parametrize(
    "header",
    [
        'attachment; filename="report 2026 (final).pdf"',
        'attachment;filename="a.txt"',
        'inline; filename="x[1]+y,z!#$&\'@^~{}-_.bin"',
        'form-data; filename=""',
    ],
)
def test_the_plain_form_is_read_without_the_full_parser(header):
    assert _PLAIN_FILENAME_RE.fullmatch(header)
    assert filename_from_content_disposition(header) == parsed_filename(header)


@pytest.mark.parametrize(
    "header",
    [
        'attachment; filename="a\\"b.txt"',  # a quoted-pair
        'attachment; filename="caf%C3%A9.txt"',
        'attachment; filename="=?utf-8?q?x?=.txt"',
        "attachment; filename=\"a.txt\"; filename*=UTF-8''b.txt",
        'attachment; filename="a;b.txt"',
        'attachment; filename="a.txt" ',
        'attachment;  filename="a.txt"',
        "attachment; filename=a.txt",
        'attachment; filename="café.txt"',
    ],
)
def test_other_forms_go_to_the_full_parser(header):
    assert not _PLAIN_FILENAME_RE.fullmatch(header)


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(["attachment", "inline", "form-data", "Attachment"]),
    space=st.sampled_from(["", " ", "  "]),
    name=st.text(alphabet=string.printable + "é€\x00", max_size=40),
    tail=st.sampled_from(["", " ", "; size=3", "; filename*=UTF-8''b%20c.txt"]),
)
def test_the_pattern_and_the_full_parser_agree(kind, space, name, tail):
    header = f'{kind};{space}filename="{name}"{tail}'
    assert filename_from_content_disposition(header) == parsed_filename(header)


def test_clean_filename_drops_control_characters_and_caps_length():
    assert clean_filename("..") == clean_filename(".") == clean_filename("a/..") == ""
    assert clean_filename("a\x00b\nc.txt") == "abc.txt"
    assert len(clean_filename("x" * 1000)) == 255


def test_upload_ids():
    assert is_upload_id("0123456789abcdef0123456789abcdef")
    assert not is_upload_id("0123456789ABCDEF0123456789ABCDEF")
    assert not is_upload_id("0123456789abcdef0123456789abcde")
    assert not is_upload_id("../" + "a" * 29)
