"""Ids as users type them: a whole id, or any unique prefix of at least `MIN_PREFIX` characters."""

from __future__ import annotations

from collections.abc import Callable

from eventq.errors import InvalidInput

__all__ = ["MIN_PREFIX", "AmbiguousId", "UnknownId", "resolve_id"]

MIN_PREFIX = 6
_SHOWN = 10  # candidates listed for an ambiguous prefix


class UnknownId(InvalidInput):
    """No record has this id, nor (for a prefix long enough) an id starting with it."""

    def __init__(self, noun: str, given: str) -> None:
        if len(given) < MIN_PREFIX:
            message = (
                f"no {noun} {given!r}: give the whole id, or at least {MIN_PREFIX} of its "
                "first characters"
            )
        else:
            message = f"no {noun} {given!r}, and no {noun} id starts with it"
        super().__init__(message, field="id", fix="copy the id from the list or the enqueue output")


class AmbiguousId(InvalidInput):
    """Several ids start with the prefix given; `candidates` lists some of them."""

    def __init__(self, noun: str, given: str, candidates: list[str]) -> None:
        more = " (and more)" if len(candidates) > _SHOWN else ""
        listed = "\n  ".join(candidates[:_SHOWN])
        super().__init__(
            f"{given!r} is the start of several {noun} ids{more}; give more characters:\n"
            f"  {listed}",
            field="id",
            fix="give more characters of the id",
        )
        self.candidates = candidates


def resolve_id(
    given: str,
    *,
    noun: str,
    exists: Callable[[str], bool],
    starting: Callable[[str, int], list[str]],
) -> str:
    """Return the whole id that `given` names: itself if a record has it, else the one id that
    starts with it (`starting(prefix, limit)` lists them).

    Raises UnknownId when none does (or `given` is shorter than `MIN_PREFIX`), AmbiguousId
    when several do.
    """
    if exists(given):
        return given
    if len(given) < MIN_PREFIX:
        raise UnknownId(noun, given)
    found = starting(given, _SHOWN + 1)
    if not found:
        raise UnknownId(noun, given)
    if len(found) > 1:
        raise AmbiguousId(noun, given, found)
    return found[0]
