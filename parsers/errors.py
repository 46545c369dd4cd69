"""The one exception a parser may raise: the input is "mine but malformed"."""

from __future__ import annotations


class ParseError(Exception):
    """Raised by a parser for input it recognises but cannot use.

    ``code`` is a short stable reason (``bad-timestamp``, ``truncated``...) stored in the
    quarantine; ``detail`` is for humans.
    """

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail

    def __reduce__(self) -> tuple[type[ParseError], tuple[str, str]]:
        # pickled with its two fields (a decoding worker process sends it back), not args
        return (type(self), (self.code, self.detail))
