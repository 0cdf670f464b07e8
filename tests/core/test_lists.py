"""List and alias expansion: members, nesting, loops and bounds."""

from __future__ import annotations

import pytest

from mailward.config import Settings
from mailward.lists import Expanded, expand

LISTS = {"all@x.example": ["ann@x.example", "dev@x.example", "Bob@x.example"],
         "dev@x.example": ["cid@x.example", "ann@x.example", "all@x.example",
                           "ops@x.example"],
         "ops@x.example": ["dee@x.example"]}


def test_members_replace_the_list_once_each_with_the_list_they_came_through():
    result = expand(["all@x.example", "eve@x.example"], LISTS)
    assert result.recipients == [
        Expanded("eve@x.example"), Expanded("ann@x.example", "all@x.example"),
        Expanded("Bob@x.example", "all@x.example"), Expanded("cid@x.example", "all@x.example"),
        Expanded("dee@x.example", "all@x.example")]
    assert not result.truncated and result.too_deep is None


def test_a_recipient_named_directly_keeps_its_own_copy_without_a_list():
    result = expand(["ALL@x.example", "ann@x.example"], LISTS)
    assert Expanded("ann@x.example") in result.recipients
    assert [r.address for r in result.recipients].count("ann@x.example") == 1


def test_addresses_that_are_no_list_pass_unchanged():
    assert expand(["a@y.example"], {}).recipients == [Expanded("a@y.example")]


def test_depth_and_member_bounds_are_kept_and_reported():
    shallow = expand(["all@x.example"], LISTS, max_depth=1)
    assert [r.address for r in shallow.recipients] == ["ann@x.example", "Bob@x.example"]
    assert shallow.too_deep == ["dev@x.example"]
    big = {"big@x.example": [f"u{n}@x.example" for n in range(50)]}
    capped = expand(["big@x.example", "own@x.example"], big, max_members=10)
    assert len(capped.recipients) == 10 and capped.truncated
    assert capped.recipients[0] == Expanded("own@x.example")


def test_a_member_that_is_no_address_is_a_configuration_error():
    with pytest.raises(ValueError, match="'nobody' \\(in list 'all@x.example'\\) is not"):
        Settings.model_validate({"lists": {"members": {"all@x.example": ["nobody"]}}})
    assert Settings.model_validate({"lists": {"members": LISTS}}).lists.max_depth == 5
