"""Bounded decompression of report attachments and files: gzip (RFC 1952) and zip (PKWARE
APPNOTE), nested up to a limit, streamed.

Pure computation: byte chunks in, byte chunks out, no files. A report arrives gzipped (RFC 7489
section 7.2.1.1 and RFC 8460 section 5.3 say gzip; Google and others send zip). Untrusted
archives are refused, with a :class:`~mtalens.parsers.errors.ParseError` reason, when they

- expand past ``Limits.max_member`` bytes (one member) or ``Limits.max_total`` (all of them):
  ``member-too-large`` / ``archive-too-large``;
- expand more than ``Limits.max_ratio`` times their compressed size once past
  ``Limits.ratio_floor`` bytes: ``zip-bomb`` (deflate tops out near 1032:1; report XML
  compresses 10-40:1);
- hold archives inside archives deeper than ``Limits.max_layers``: ``archive-nested-too-deep``;
- hold more than ``Limits.max_members`` files: ``zip-too-many-members``;
- are damaged: ``truncated-gzip``, ``bad-gzip``, ``bad-zip``, ``encrypted-zip``.

The archive is identified by its magic number, never by its name: gzip ``1f 8b`` (RFC 1952
section 2.3.1), zip local header ``PK\\x03\\x04`` or the empty archive's end record
``PK\\x05\\x06`` (APPNOTE section 4.3). Errors are raised lazily, while the caller reads the
chunks: a consumer must be ready for a ``ParseError`` from the iterator at any point.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from mtalens.parsers.errors import ParseError

GZIP_MAGIC: Final = b"\x1f\x8b"
ZIP_MAGICS: Final = (b"PK\x03\x04", b"PK\x05\x06")
CHUNK: Final = 1 << 20  # decompressed bytes produced per step

MiB: Final = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Caps on what one input may expand to. House policy: the largest real aggregate reports
    seen are tens of MB of XML, so the defaults leave room for a 100 MB report."""

    max_member: int = 512 * MiB  # decompressed bytes of one member
    max_total: int = 1024 * MiB  # decompressed bytes of all members of one input
    max_ratio: int = 250  # decompressed / compressed, checked once past ratio_floor
    ratio_floor: int = 8 * MiB
    max_layers: int = 2  # archives around the report: zip, or zip around gzip
    max_members: int = 16  # files in one zip
    max_zip_bytes: int = 256 * MiB  # a zip is read whole (its directory is at the end)


DEFAULT_LIMITS: Final = Limits()


@dataclass(slots=True)
class _Budget:
    total: int = 0
    limits: Limits = field(default_factory=Limits)

    def spend(self, n: int) -> None:
        self.total += n
        if self.total > self.limits.max_total:
            raise ParseError(
                "archive-too-large",
                f"expands past {self.limits.max_total} bytes in total",
            )


@dataclass(frozen=True, slots=True)
class Member:
    """One file found inside the input (or the input itself when it is not an archive).
    ``name`` is the path through the archives, e.g. ``report.zip/report.xml``; ``chunks`` yields
    its bytes and may raise ``ParseError``."""

    name: str
    chunks: Iterator[bytes]
    layers: int  # archives unwrapped to reach it


class _Peekable:
    """An iterator of byte chunks whose first bytes can be looked at without losing them."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._head = b""

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            nxt = next(self._it, None)
            if nxt is None:
                break
            self._head += nxt
        return self._head[:n]

    def __iter__(self) -> Iterator[bytes]:
        if self._head:
            head, self._head = self._head, b""
            yield head
        yield from self._it


def is_archive(head: bytes) -> bool:
    return head.startswith(GZIP_MAGIC) or head.startswith(ZIP_MAGICS)


def unpack(
    data: bytes | Iterable[bytes], *, name: str, limits: Limits = DEFAULT_LIMITS
) -> Iterator[Member]:
    """The files inside ``data`` (gzip and zip unwrapped, nested up to ``limits.max_layers``),
    or ``data`` itself when it is no archive."""
    chunks: Iterable[bytes] = (data,) if isinstance(data, bytes) else data
    yield from _layer(_Peekable(chunks), name, 0, _Budget(limits=limits))


def _layer(stream: _Peekable, name: str, layers: int, budget: _Budget) -> Iterator[Member]:
    head = stream.peek(4)
    limits = budget.limits
    if not is_archive(head):
        yield Member(name, iter(stream), layers)
        return
    if layers >= limits.max_layers:
        raise ParseError(
            "archive-nested-too-deep",
            f"{name}: an archive inside {layers} archive(s) (at most {limits.max_layers} layers)",
        )
    if head.startswith(GZIP_MAGIC):
        inner = _Peekable(_gunzip(stream, name, budget))
        yield from _layer(inner, _strip_suffix(name, ".gz"), layers + 1, budget)
        return
    blob = _collect(stream, limits.max_zip_bytes, name)
    yield from _unzip(blob, name, layers, budget)


def _strip_suffix(name: str, suffix: str) -> str:
    return (
        name[: -len(suffix)] if name.lower().endswith(suffix) and len(name) > len(suffix) else name
    )


def _collect(stream: Iterable[bytes], cap: int, name: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    for chunk in stream:
        size += len(chunk)
        if size > cap:
            raise ParseError("archive-too-large", f"{name}: zip file larger than {cap} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _check_member(name: str, produced: int, consumed: int, limits: Limits) -> None:
    if produced > limits.max_member:
        raise ParseError("member-too-large", f"{name}: expands past {limits.max_member} bytes")
    if produced > limits.ratio_floor and produced > limits.max_ratio * max(consumed, 1):
        raise ParseError(
            "zip-bomb",
            f"{name}: {consumed} compressed bytes expand past {produced} "
            f"(more than {limits.max_ratio}:1)",
        )


def _gunzip(src: Iterable[bytes], name: str, budget: _Budget) -> Iterator[bytes]:
    """RFC 1952, streamed; concatenated members (section 2.2) are read one after the other."""
    limits = budget.limits
    d = zlib.decompressobj(wbits=31)
    consumed = produced = 0
    started = False
    try:
        for chunk in src:
            data = chunk
            while data:
                started = True
                out = d.decompress(data, CHUNK)
                consumed += len(data) - len(d.unconsumed_tail)  # what this step really used
                data = d.unconsumed_tail
                while out:
                    produced += len(out)
                    budget.spend(len(out))
                    _check_member(name, produced, consumed, limits)
                    yield out
                    # a long match may leave output pending with no input left
                    out = d.decompress(b"", CHUNK) if len(out) == CHUNK and not d.eof else b""
                if d.eof:
                    rest = d.unused_data + data
                    data = b""
                    if rest.startswith(GZIP_MAGIC):
                        d = zlib.decompressobj(wbits=31)
                        data = rest
                    elif rest.strip(b"\0"):
                        raise ParseError(
                            "bad-gzip", f"{name}: data after the end of the gzip stream"
                        )
    except zlib.error as exc:
        raise ParseError("bad-gzip", f"{name}: {exc}") from None
    if not started or not d.eof:
        raise ParseError("truncated-gzip", f"{name}: gzip stream ends early ({consumed} bytes)")


def _unzip(blob: bytes, name: str, layers: int, budget: _Budget) -> Iterator[Member]:
    limits = budget.limits
    try:
        zf = zipfile.ZipFile(io.BytesIO(blob))
        infos = [i for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as exc:
        raise ParseError("bad-zip", f"{name}: {exc}") from None
    if not infos:
        raise ParseError("bad-zip", f"{name}: empty zip")
    if len(infos) > limits.max_members:
        raise ParseError(
            "zip-too-many-members", f"{name}: {len(infos)} files (at most {limits.max_members})"
        )
    for info in infos:
        inner = f"{name}/{info.filename}"
        if info.flag_bits & 0x1:  # APPNOTE 4.4.4 bit 0: encrypted
            raise ParseError("encrypted-zip", f"{inner}: encrypted")
        # the declared sizes can lie, so they only allow refusing early; the reads check again
        if info.file_size > limits.max_member:
            raise ParseError(
                "member-too-large", f"{inner}: declares {info.file_size} bytes uncompressed"
            )
        _check_member(inner, info.file_size, info.compress_size, limits)
        stream = _Peekable(_read_member(zf, info, inner, budget))
        yield from _layer(stream, inner, layers + 1, budget)


def _read_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, budget: _Budget
) -> Iterator[bytes]:
    produced = 0
    try:
        with zf.open(info) as f:
            while True:
                out = f.read(CHUNK)
                if not out:
                    break
                produced += len(out)
                budget.spend(len(out))
                _check_member(name, produced, info.compress_size, budget.limits)
                yield out
    except ParseError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise ParseError("bad-zip", f"{name}: {exc}") from None
    except NotImplementedError as exc:  # a compression method zipfile cannot read
        raise ParseError("bad-zip", f"{name}: {exc}") from None
    except RuntimeError as exc:  # zipfile: "File is encrypted, password required"
        raise ParseError("encrypted-zip", f"{name}: {exc}") from None
