"""What every provider module shares: the provider protocols and the streaming result object."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Protocol, runtime_checkable

from tidegate.core.llm import EmbeddingResponse, LLMRequest, LLMResponse
from tidegate.providers.errors import translate_errors


class TextStream(Iterator[str]):
    """Text deltas of one streamed completion; ``response`` holds the totals once exhausted.

    The HTTP call is made before this object exists, so 429s, auth errors and the like are raised
    by ``provider.stream(...)`` itself; failures part-way through are raised by iteration. Every
    failure is a :class:`~tidegate.core.llm.ProviderError`. ``close()`` (or ``with``) drops the
    connection early, e.g. when a job is cancelled mid-answer.
    """

    def __init__(self, provider: str, gen: Generator[str, None, LLMResponse]) -> None:
        self._provider = provider
        self._gen = gen
        self.response: LLMResponse | None = None

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        with translate_errors(self._provider):
            try:
                return next(self._gen)
            except StopIteration as stop:
                self.response = stop.value
                raise

    def text(self) -> str:
        """Drain the stream and return the whole text (handy in tests and simple callers)."""
        return "".join(self)

    def close(self) -> None:
        self._gen.close()

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@runtime_checkable
class LLMProvider(Protocol):
    name: str
    simulated: bool

    def complete(self, req: LLMRequest) -> LLMResponse: ...

    def stream(self, req: LLMRequest) -> TextStream: ...


@runtime_checkable
class EmbeddingProvider(Protocol):
    name: str
    simulated: bool

    def embed(self, texts: list[str], model: str, timeout_s: float = 60.0) -> EmbeddingResponse: ...


def split_system(req: LLMRequest) -> tuple[str | None, list[tuple[str, str]]]:
    """System text (joined) and the remaining ``(role, content)`` turns, for APIs that separate them."""
    system = [m.content for m in req.messages if m.role == "system"]
    turns = [(m.role, m.content) for m in req.messages if m.role != "system"]
    return ("\n\n".join(system) if system else None), turns


def batches(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), max(1, size)):
        yield items[i:i + max(1, size)]
