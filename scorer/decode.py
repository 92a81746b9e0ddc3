"""Request deserializers that never raise: a bad message becomes a :class:`Malformed` value.

grpc.aio parses a request with the method's deserializer before the handler
runs; a deserializer that raises ends the call with UNKNOWN ("Unexpected
DecodeError") and logs a traceback per call. These deserializers hand the
handler a :class:`Malformed` instead, and the servicer answers it with
INVALID_ARGUMENT naming the problem, in one log line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class Malformed:
    """A request that could not be turned into its message; ``field`` names where, ``reason`` what."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def parser(message: type[M]) -> Callable[[bytes], M | Malformed]:
    """A request deserializer for ``message`` that returns Malformed instead of raising."""
    full_name = message.DESCRIPTOR.full_name

    def parse(data: bytes) -> M | Malformed:
        try:
            return message.FromString(data)
        except DecodeError:
            return Malformed("request", f"malformed protobuf, not a valid {full_name} ({len(data)} bytes)")

    return parse
