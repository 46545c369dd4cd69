"""Postfix configuration as ``postconf`` prints it: ``postconf -n`` (main.cf parameters set
explicitly, one ``name = value`` per line) and ``postconf -M`` (master.cf services, one per line:
service, type, private, unpriv, chroot, wakeup, maxproc, command and its arguments, master(5)).
Both may be in one text (``(postconf -n; postconf -M) > conf.txt``), and main.cf and master.cf
themselves read the same way (``#`` comments, a line starting with white space continues the
one before; postconf(5) "main.cf" syntax, master(5)).

Parameter values are expanded for ``$name`` and ``${name}`` (postconf(5) "parameter
expansion"); the conditional forms ``${name?value}`` / ``${name:value}`` are resolved too.
Samples: tests/test_audit.py (real ``postconf -n``/``-M`` output of the lab's Postfix 3.7, and
hand-written edge cases).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from mtalens.parsers.errors import ParseError

SERVICE_TYPES: Final = frozenset({"inet", "unix", "unix-dgram", "fifo", "pass"})
_PARAM: Final = re.compile(r"([A-Za-z0-9_]+)\s*=\s*(.*)\Z", re.DOTALL)
_EXPAND: Final = re.compile(
    r"\$(?:\{([A-Za-z0-9_]+)(?:([?:])([^}]*))?\}|\(([A-Za-z0-9_]+)\)|([A-Za-z0-9_]+))"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    """One master.cf entry; ``overrides`` are its ``-o name=value`` arguments."""

    name: str
    type: str
    private: str
    unpriv: str
    chroot: str
    wakeup: str
    maxproc: str
    command: str
    args: tuple[str, ...] = ()
    overrides: tuple[tuple[str, str], ...] = ()

    @property
    def port(self) -> str:
        """The port part of an inet service name (``smtp``, ``587``, ``127.0.0.1:25``)."""
        return self.name.rsplit(":", 1)[-1] if self.type == "inet" else ""

    def override(self, name: str) -> str | None:
        return dict(self.overrides).get(name)


@dataclass(frozen=True, slots=True, kw_only=True)
class PostfixConfig:
    main: Mapping[str, str] = field(default_factory=dict)  # as written, not expanded
    services: tuple[Service, ...] = ()

    def expand(self, value: str, defaults: Mapping[str, str] = {}, depth: int = 0) -> str:
        """``value`` with parameter references replaced (main.cf first, then ``defaults``);
        unknown names expand to the empty string, as Postfix does."""
        if depth > 20 or "$" not in value:
            return value

        def sub(m: re.Match[str]) -> str:
            name = m.group(1) or m.group(4) or m.group(5)
            raw = self.main.get(name, defaults.get(name, ""))
            if m.group(2) == "?":  # ${name?value}: value if name is non-empty
                return self.expand(m.group(3), defaults, depth + 1) if raw else ""
            if m.group(2) == ":":  # ${name:value}: value if name is empty
                return "" if raw else self.expand(m.group(3), defaults, depth + 1)
            return self.expand(raw, defaults, depth + 1)

        return _EXPAND.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


def _split_args(text: str) -> list[str]:
    """master.cf arguments: white-space separated, ``{ ... }`` groups kept whole (Postfix 3.0+)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        if text[i] == "{":
            end = text.find("}", i)
            if end < 0:
                raise ParseError("bad-master-entry", "unbalanced { in arguments")
            out.append(text[i + 1 : end].strip())
            i = end + 1
            continue
        j = i
        while j < len(text) and not text[j].isspace():
            j += 1
        out.append(text[i:j])
        i = j
    return out


def _service(line: str, number: int) -> Service:
    fields = line.split(None, 7)
    if len(fields) < 8:
        raise ParseError("bad-master-entry", f"line {number}: fewer than 8 fields")
    name, typ, private, unpriv, chroot, wakeup, maxproc, rest = fields
    words = _split_args(rest)
    overrides: list[tuple[str, str]] = []
    k = 1
    while k < len(words):
        word = words[k]
        if word == "-o" and k + 1 < len(words):
            setting = words[k + 1]
            k += 2
        elif word.startswith("-o") and len(word) > 2:
            setting = word[2:]
            k += 1
        else:
            k += 1
            continue
        m = _PARAM.match(setting.strip())
        if m is None:
            raise ParseError("bad-master-entry", f"line {number}: bad -o {setting!r}")
        overrides.append((m.group(1), m.group(2).strip()))
    return Service(name=name, type=typ, private=private, unpriv=unpriv, chroot=chroot,
                   wakeup=wakeup, maxproc=maxproc, command=words[0] if words else "",
                   args=tuple(words[1:]), overrides=tuple(overrides))  # fmt: skip


def parse_postconf(text: str) -> PostfixConfig:
    """``postconf -n`` and/or ``postconf -M`` output (or main.cf / master.cf text)."""
    logical: list[tuple[int, str]] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and logical:
            n, before = logical[-1]
            logical[-1] = (n, before + " " + line.strip())
            continue
        logical.append((number, line.strip()))
    main: dict[str, str] = {}
    services: list[Service] = []
    for number, line in logical:
        fields = line.split()
        if len(fields) >= 8 and fields[1] in SERVICE_TYPES:
            services.append(_service(line, number))
            continue
        m = _PARAM.match(line)
        if m is None:
            raise ParseError(
                "not-postconf", f"line {number} is neither 'name = value' nor a master.cf entry"
            )
        main[m.group(1)] = m.group(2).strip()
    if not main and not services:
        raise ParseError("not-postconf", "no parameter and no service in it")
    return PostfixConfig(main=main, services=tuple(services))


_TIME: Final = re.compile(r"([0-9]+)([smhdw]?)\Z")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def time_seconds(value: str, default_unit: str = "d") -> int | None:
    """A postconf(5) time value (``5d``, ``12h``, ``3600s``; a bare number has the parameter's
    default unit) in seconds; None if it is not one."""
    m = _TIME.match(value.strip().lower())
    if m is None:
        return None
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2) or default_unit]


def restriction_list(value: str) -> tuple[str, ...]:
    """The restrictions of an ``smtpd_*_restrictions`` value (comma or white space separated;
    a restriction's table argument stays with it as its own item)."""
    return tuple(t for t in re.split(r"[\s,]+", value) if t)
