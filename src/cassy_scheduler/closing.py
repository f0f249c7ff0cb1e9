"""One way to hold what must be closed (a channel, a state file, the wiring of a process):
`with` it, and leaving the block closes it, however the block ends."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class Closing(ABC):
    """A resource that `with` closes on the way out."""

    @abstractmethod
    def close(self) -> None:
        """Release what the resource holds; safe to call once the work is over."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
