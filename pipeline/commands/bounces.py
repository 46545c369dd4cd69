"""`mtalens bounces parse|ingest`: decode bounce and complaint emails (thin; see pipeline/bounces.py)."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mtalens.pipeline.commands.writing import LakeOption, WriterOption, open_for_writing
from mtalens.pipeline.exitcodes import ExitCode

if TYPE_CHECKING:
    from mtalens.pipeline.bounces import BounceRow

bounces_app = typer.Typer(
    name="bounces",
    help="Decode bounces (DSNs), complaints (ARF) and auto-replies.",
    no_args_is_help=True,
)

PathsArg = Annotated[
    list[str], typer.Argument(help="Maildirs, mbox files, .eml files or directories")
]
_TABLE_COLS = ("message", "recipient", "kind", "status", "reply_code", "reason", "hard", "source")


def _report_unreadable(path: str, reason: str) -> None:
    print(f"mtalens: {path}: {reason}", file=sys.stderr)


def _outcome(paths: list[str], unreadable: int) -> ExitCode:
    """OK, PARTIAL when some paths could not be read, USAGE when none could."""
    if not unreadable:
        return ExitCode.OK
    return ExitCode.USAGE if unreadable >= len(paths) else ExitCode.PARTIAL


@bounces_app.command("parse")
def parse(
    paths: PathsArg,
    fmt: Annotated[
        str, typer.Option("--format", help="json (one object per line) or table")
    ] = "json",
) -> None:
    """Decode messages and print one row per recipient; nothing is stored.

    A message that cannot be decoded is a row too, with kind `undecodable` and the reason.
    Exit codes: 0 every path was read; 3 some paths could not be read (each named on stderr);
    2 none could, or a bad option."""
    from mtalens.pipeline.bounces import Decoded, failure_row, parse_paths

    if fmt not in ("json", "table"):
        raise typer.BadParameter("--format must be json or table")
    unreadable = 0

    def on_error(path: str, reason: str) -> None:
        nonlocal unreadable
        unreadable += 1
        _report_unreadable(path, reason)

    if fmt == "table":
        print("\t".join(_TABLE_COLS))
    for item in parse_paths(paths, on_error=on_error):
        _print_row(failure_row(item) if isinstance(item, Decoded) else item, fmt)
    code = _outcome(paths, unreadable)
    if code:
        raise typer.Exit(code)


def _print_row(row: BounceRow, fmt: str) -> None:
    data = row.to_json()
    if fmt == "json":
        print(json.dumps(data, ensure_ascii=False))
    else:
        print("\t".join("" if data[c] is None else _cell(str(data[c])) for c in _TABLE_COLS))


def _cell(text: str) -> str:
    # one row per line, whatever the message says: tabs, newlines, escapes, bidi controls go
    from mtalens.pipeline.cells import terminal_text

    return terminal_text(text, " ")


SourcesArg = Annotated[
    list[str],
    typer.Argument(
        help="Maildirs, mbox files, .eml files, directories, or IMAP mailboxes as "
        "imaps://USER@HOST[:PORT]/MAILBOX (implicit TLS) or imap://... (STARTTLS)"
    ),
]


@bounces_app.command("ingest")
def ingest_cmd(
    paths: SourcesArg,
    db: Annotated[
        str | None, typer.Option("--db", envvar="MTALENS_DB", help="DuckDB store file")
    ] = None,
    lake_dir: LakeOption = None,
    writer: WriterOption = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config", help="mtalens.toml ([suppressions], [imap]); default ./mtalens.toml"
        ),
    ] = None,
    imap_password_file: Annotated[
        str | None,
        typer.Option(
            "--imap-password-file",
            help="IMAP password: first line of this file (mode 0600); else $MTALENS_IMAP_PASSWORD, "
            "else [imap] password in the config (mode 0600)",
        ),
    ] = None,
    imap_ca_file: Annotated[
        str | None,
        typer.Option(
            "--imap-ca-file", help="PEM CA certificates for the IMAP server's (private CA)"
        ),
    ] = None,
    imap_move_to: Annotated[
        str | None,
        typer.Option(
            "--imap-move-to",
            help="after its rows are stored, move each IMAP message to this folder "
            "(default: flag it \\Seen)",
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress line (default: on a terminal)."),
    ] = None,
) -> None:
    """Decode, classify and store reports, recipients and complaints (idempotent).

    Messages that cannot be decoded are quarantined with a reason (counted in the summary).
    IMAP messages are read by UID without setting \\Seen and flagged (or moved) only once
    stored; a checkpoint per mailbox means a second run reads only new mail.
    Exit codes: 0 every source was read; 3 some could not be (each named on stderr);
    2 none could, or a bad option, config, password file or store."""
    from mtalens.parsers.imapurl import is_imap_url
    from mtalens.pipeline import upkeep
    from mtalens.pipeline.bounces import ingest
    from mtalens.pipeline.config import load_config
    from mtalens.pipeline.exitcodes import InputError

    cfg = load_config(config)
    files = [p for p in paths if not is_imap_url(p)]
    mailboxes = [p for p in paths if is_imap_url(p)]
    if mailboxes:
        import os

        from mtalens.pipeline import imap

        urls = [imap.parse_url(m) for m in mailboxes]
        options = imap.ImapOptions(
            password=imap.resolve_password(
                password_file=imap_password_file, environ=os.environ, config=cfg.imap
            ),
            ca_file=imap_ca_file or cfg.imap.ca_file,
            move_to=imap_move_to,
        )
        imap.tls_context(options.ca_file)  # a bad CA file fails before anything is read
    elif imap_password_file or imap_ca_file or imap_move_to:
        raise InputError("--imap-* options need an imaps:// or imap:// source")
    show = sys.stderr.isatty() if progress is None else progress
    with open_for_writing(db, lake_dir, writer) as store:
        if show and files:
            from mtalens.pipeline.progress import Progress

            with Progress("decoding", _bytes_under(files), items="messages") as bar:

                def seen(msg: Any) -> None:
                    bar.count()
                    bar.update(len(msg.raw))

                r = ingest(store, files, progress=seen)
        else:
            r = ingest(store, files)
        if mailboxes:
            for url in urls:
                try:
                    imap.ingest_mailbox(
                        store, url, options, result=r,
                        on_warning=lambda m: print(f"mtalens: warning: {m}", file=sys.stderr),
                    )  # fmt: skip
                except imap.ImapError as exc:
                    r.unreadable.append((exc.source, exc.reason))
        upkeep.fold_new_rows(store, cfg.suppressions)
    for path, reason in r.unreadable:
        _report_unreadable(path, reason)
    print(
        f"read {r.read}: stored {r.stored}, duplicates {r.duplicates}, quarantined "
        f"{r.quarantined}; {r.recipients} recipients, {r.complaints} complaints"
    )
    code = _outcome(paths, len(r.unreadable))
    if code:
        raise typer.Exit(code)


def _bytes_under(paths: list[str]) -> int:
    """The size of every regular file at or under ``paths``: the progress line's total (an
    mbox's From_ lines and a Maildir's tmp/ make it a little more than the messages)."""
    import os

    total = 0
    for p in paths:
        if os.path.isdir(p):
            for root, _dirs, names in os.walk(p):
                for name in names:
                    with contextlib.suppress(OSError):
                        total += os.lstat(os.path.join(root, name)).st_size
        else:
            with contextlib.suppress(OSError):
                total += os.stat(p).st_size
    return total
