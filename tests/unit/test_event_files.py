"""`eventq enqueue` reads a JSON object, a JSON array or JSON Lines, and names bad items."""

from __future__ import annotations

from eventq_cli.event_files import read_items


def test_an_object_is_one_item() -> None:
    items = list(read_items('{"a": 1}'))
    assert [(i.place, i.value) for i in items] == [("item 1", {"a": 1})]


def test_an_array_gives_indexed_items() -> None:
    items = list(read_items('[{"a": 1}, {"b": 2}]'))
    assert [i.place for i in items] == ["item 1", "item 2"]


def test_json_lines_give_line_numbers_and_skip_blank_lines() -> None:
    items = list(read_items('{"a": 1}\n\n{"b": 2}\n'))
    assert [i.place for i in items] == ["line 1", "line 3"]


def test_a_broken_line_is_an_error_item_and_the_rest_still_count() -> None:
    items = list(read_items('{"a": 1}\nnot json\n{"b": 2}'))
    assert [i.place for i in items] == ["line 1", "line 2", "line 3"]
    assert items[1].error is not None
    assert "not valid JSON" in items[1].error


def test_an_empty_input_is_an_error() -> None:
    items = list(read_items("  \n"))
    assert items[0].error is not None
    assert "empty" in items[0].error
