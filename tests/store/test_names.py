"""Naming rules: nothing unsafe passes ``validate_path`` or ``validate_namespace``.

The property tests throw strings built from the characters that make path tricks (slashes,
dots, backslashes, NUL and other control characters, multi-byte letters) at the validators
and check every accepted string against the rules of DESIGN.md; the example tests pin the
known bad inputs one by one.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from packyard.store.errors import InvalidInput, InvalidName
from packyard.store.names import (
    NAMESPACE_MAX,
    PATH_MAX_BYTES,
    SEGMENT_MAX_BYTES,
    ancestors,
    is_within,
    validate_namespace,
    validate_path,
    validate_prefix,
)

NAMESPACE_RULE = re.compile(r"[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9][a-z0-9_-]*)*", re.ASCII)
ROOT = "/srv/packyard/ns"

# Characters that build path tricks, plus ordinary and multi-byte ones.
TRICKY = ["/", ".", "..", "\\", "\x00", "\n", "\r", "\t", "\x7f", "\x1b", "\x85", "~", " ", ":"]
ORDINARY = ["a", "b", "Z", "0", "_", "-", "é", "ß", "日本", "\U0001f600"]

tricky_paths = st.lists(st.sampled_from(TRICKY + ORDINARY), max_size=24).map("".join)
any_text = st.text(max_size=80)
long_paths = st.lists(
    st.text(alphabet=st.sampled_from(["a", "é", "日", "\U0001f600"]), min_size=1, max_size=300),
    min_size=1,
    max_size=8,
).map("/".join)
safe_segment = st.text(
    alphabet=st.characters(
        codec="utf-8",
        exclude_categories=("Cc", "Cs"),
        exclude_characters="/\\",
    ),
    min_size=1,
    max_size=40,
).filter(lambda s: s not in (".", ".."))


def accepted(fn, value: str) -> bool:  # noqa: ANN001
    try:
        fn(value)
    except InvalidName:
        return False
    return True


def assert_safe_path(path: str) -> None:
    """Every rule of DESIGN.md for an accepted namespace file path."""
    assert path
    assert not path.startswith("/")
    assert "\\" not in path
    assert "\x00" not in path
    assert not any(unicodedata.category(c) == "Cc" for c in path)
    segments = path.split("/")
    assert all(s not in ("", ".", "..") for s in segments)
    assert all(len(s.encode("utf-8")) <= SEGMENT_MAX_BYTES for s in segments)
    assert len(path.encode("utf-8")) <= PATH_MAX_BYTES
    assert posixpath.normpath(path) == path
    joined = posixpath.normpath(posixpath.join(ROOT, path))
    assert joined.startswith(ROOT + "/")
    assert posixpath.commonpath([ROOT, joined]) == ROOT


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(tricky_paths, any_text, long_paths))
@example("../x")
@example("a/../../b")
@example("/etc/passwd")
@example("a/./b")
@example("./a")
@example("a/")
@example("a//b")
@example("a\\..\\b")
@example("a\x00b")
@example("")
def test_no_accepted_path_is_unsafe(path: str) -> None:
    if accepted(validate_path, path):
        assert validate_path(path) == path
        assert_safe_path(path)


@settings(max_examples=300)
@given(st.lists(safe_segment, min_size=1, max_size=6).map("/".join))
def test_ordinary_paths_are_accepted(path: str) -> None:
    """The rules are not so strict that they refuse plain names (the property above is not vacuous)."""
    fits = len(path.encode()) <= PATH_MAX_BYTES and all(len(s.encode()) <= SEGMENT_MAX_BYTES for s in path.split("/"))
    assert accepted(validate_path, path) == fits
    if fits:
        assert_safe_path(path)


NS_CHARS = ["a", "z", "0", "9", "_", "-", ".", "..", "A", "é", " ", "\n", "/", "*"]


@settings(max_examples=600)
@given(
    st.one_of(
        st.lists(st.sampled_from(NS_CHARS), max_size=30).map("".join),
        st.text(max_size=40),
        st.from_regex(NAMESPACE_RULE, fullmatch=True),
        st.integers(250, 260).map(lambda n: ("ab." * n)[:n].rstrip(".")),
    )
)
@example("company.sales")
@example("a" * 256)
def test_accepted_namespaces_follow_the_rule(name: str) -> None:
    ok = accepted(validate_namespace, name)
    if ok:
        assert NAMESPACE_RULE.fullmatch(name)
        assert len(name) <= NAMESPACE_MAX
    # and the converse: everything the rule allows is accepted
    assert ok == bool(NAMESPACE_RULE.fullmatch(name) and len(name) <= NAMESPACE_MAX)


@pytest.mark.parametrize(
    "path",
    [
        "../x",
        "/etc/passwd",
        "a/../../b",
        "..",
        ".",
        "a/./b",
        "a\\b",
        "..\\x",
        "C:\\Windows",
        "a\x00b",
        "a\nb",
        "a\x1fb",
        "a//b",
        "a/",
        "//a",
        "",
        "x" * 256,
        "d/" + "é" * 128,  # 256 bytes, 128 characters
        "/".join(["y" * 200] * 6),  # 1205 bytes, all segments fine
        "/".join(["z" * 255] * 3 + ["z" * 254, "xy"]),  # 1025 bytes exactly
    ],
)
def test_bad_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidName):
        validate_path(path)


def test_path_limits_are_inclusive() -> None:
    assert validate_path("x" * 255) == "x" * 255
    exactly = "/".join(["z" * 255] * 3 + ["z" * 254, "x"])
    assert len(exactly.encode()) == 1024
    assert validate_path(exactly) == exactly
    over = exactly + "y"
    assert len(over.encode()) == 1025
    with pytest.raises(InvalidName):
        validate_path(over)


def test_invalid_name_is_invalid_input() -> None:
    """So HTTP maps it to 400 and the CLI to exit 2, through the base class."""
    with pytest.raises(InvalidInput):
        validate_path("../x")


@pytest.mark.parametrize("path", ["a", "a/b.txt", ".hidden", "a/..b", "...", "dir/file name.txt", "日本/é.py"])
def test_good_paths_are_accepted(path: str) -> None:
    assert validate_path(path) == path


@pytest.mark.parametrize(
    "name",
    ["Company", "company.Sales", "a..b", ".a", "a.", "-a", "_a", "a.-b", "a b", "a/b", "é", "", "*", "a" * 256],
)
def test_bad_namespaces_are_refused(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_namespace(name)


@pytest.mark.parametrize("name", ["company", "company.sales", "a-b_c.0", "9", "a" * 255, ".".join(["ab"] * 85)])
def test_good_namespaces_are_accepted(name: str) -> None:
    assert validate_namespace(name) == name


def test_prefix_allows_one_trailing_slash() -> None:
    assert validate_prefix("") == ""
    assert validate_prefix(None) == ""
    assert validate_prefix("a/") == "a/"
    assert validate_prefix("a/b") == "a/b"
    for bad in ("/", "../", "a//", "/a/", "a/../"):
        with pytest.raises(InvalidName):
            validate_prefix(bad)


def test_ancestors_nearest_first() -> None:
    assert ancestors("a.b.c") == ["a.b.c", "a.b", "a"]
    assert ancestors("company") == ["company"]
    with pytest.raises(InvalidName):
        ancestors("a..b")


@pytest.mark.parametrize(
    ("namespace", "scope", "within"),
    [
        ("company", "company", True),
        ("company.sales", "company", True),
        ("company.sales.eu", "company", True),
        ("company.salesX", "company.sales", False),
        ("company.sales2.x", "company.sales", False),
        ("companyx", "company", False),
        ("company", "company.sales", False),
        ("other", "company", False),
    ],
)
def test_is_within(namespace: str, scope: str, within: bool) -> None:
    assert is_within(namespace, scope) is within
