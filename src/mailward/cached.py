"""A cached property without a lock, for the objects one message is judged by.

``functools.cached_property`` on Python 3.11 takes one lock per property,
shared by every instance of the class: while one thread computes the URLs of
a slow message, every other thread that asks for the URLs of any message
waits. The gateway judges messages on a pool of threads, so one hostile
message stalled all mail behind it.

A message and its MIME entities are judged by one task at a time, so no lock
is needed: ``cached_property`` here is a non-data descriptor that stores the
value in the instance's ``__dict__`` under the property's name, after which
attribute lookup finds the value and the descriptor is no longer called. Two
threads reading the same unset property at once would both compute it and
the later result would win, which is harmless for these pure views.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar, overload

T = TypeVar("T")


class cached_property(Generic[T]):  # noqa: N801 - reads like the property it replaces
    """cached_property - compute once per instance, then read from its __dict__."""

    def __init__(self, function: Callable[[Any], T]) -> None:
        self.function = function
        self.name = function.__name__
        self.__doc__ = function.__doc__
        self.__module__ = function.__module__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> cached_property[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = self.function(instance)
        instance.__dict__[self.name] = value
        return value
