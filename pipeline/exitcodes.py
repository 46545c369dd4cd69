"""The exit codes of every `mtalens` command: one contract, printed in `mtalens --help` and the
README. Scripts, cron jobs and monitoring rely on them; never reuse a number for another meaning.

Where more than one applies, the highest-priority one wins: a usage or input error (nothing
useful was done) over findings over partial success."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    """Success: everything asked was done (and, for a command that judges, nothing to report)."""
    FINDINGS = 1
    """A command that judges found something at or above its threshold (`diagnose --fail-on`,
    `dns check` failures, an address listed by `dns blocklist`)."""
    USAGE = 2
    """Usage or input error: a bad option or argument, a path that does not exist, SQL that does
    not run, a store that cannot be opened. Nothing (or nothing useful) was done."""
    PARTIAL = 3
    """Partial success: the command ran, but some inputs could not be used (a corrupt compressed
    file, a message that could not be read, a DNS lookup that failed); each one is named on
    stderr or in the output, and what could be used was."""
    BUG = 70
    """An internal error (sysexits' EX_SOFTWARE): a bug in mtalens; please report it."""


EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 findings (a judging command found something at its threshold); "
    "2 usage or input error; 3 partial success (some inputs could not be used, each named); "
    "70 internal error."
)


class InputError(Exception):
    """An error the user can act on (a bad path, option, config, query or store): the CLI prints
    it as one line, ``mtalens: <message>``, and exits with :attr:`exit_code`. Library errors
    subclass it, so no command has to remember to catch them."""

    exit_code: ExitCode = ExitCode.USAGE
