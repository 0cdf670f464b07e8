"""Content commands: ``mailward vip`` and ``mailward learn`` / ``unlearn``.

``mailward vip import people.csv`` reads a CSV file with a header row
(name, email, and optionally role and aliases; several addresses or aliases
are separated by ``;``) and adds or updates those people; ``--replace``
makes the directory exactly the file. ``mailward vip list`` prints it.

``mailward learn`` and ``mailward unlearn`` give the spam model feedback
from files. Both go through ``content.learn``, the same code a "not spam"
release and a user report use, and change the site's model in the data
directory; a running gateway picks the change up by itself.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from mailward.cli import Context, pass_context
from mailward.terminal import tsv_line
from mailward.content.vip import (
    DirectoryError,
    import_people,
    load_people,
    parse_csv,
    remove_person,
)

console = Console(stderr=True, soft_wrap=True)
MAX_FILE = 64 * 1024 * 1024


def _files(paths: tuple[str, ...]) -> list[Path]:
    from mailward.content.train import message_files

    found = message_files(Path(p) for p in paths)
    if not found:
        console.print("[red]no message files found in the paths given[/red]")
        sys.exit(1)
    return found


# Header lines a mail file starts with; /etc/passwd's "root:x:0:0:..." is
# shaped like a header line too, so one of these must be among them.
_MAIL_HEADERS = re.compile(rb"(?im)^(from|subject|received|date|message-id|to|return-path)"
                           rb"[ \t]*:")
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:|[ \t]")


def not_mail(raw: bytes) -> str | None:
    """not_mail - why these bytes are not a mail message, or None if they are one.

    A message starts with a block of ``Name: value`` header lines (an mbox
    ``From `` line before it is allowed), up to the first empty line or the
    first line of another shape, that names at least one of the headers
    every message has.
    """
    if not raw.strip():
        return "the file is empty"
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    if lines[0].startswith(b"From "):
        lines = lines[1:]
    if not lines[0] or lines[0][:1] in (b" ", b"\t") or not _HEADER_LINE.match(lines[0]):
        return "it does not start with a mail header (a Name: value line)"
    head: list[bytes] = []
    for line in lines:
        if not line or not _HEADER_LINE.match(line):
            break
        head.append(line)
    if not _MAIL_HEADERS.search(b"\n".join(head)):
        return ("its header block has none of From, Subject, Received, Date, "
                "Message-ID, To or Return-Path")
    return None


@click.command()
@click.option("--spam", is_flag=True, help="The messages are spam.")
@click.option("--ham", is_flag=True, help="The messages are legitimate.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@pass_context
def learn(context: Context, spam: bool, ham: bool, paths: tuple[str, ...]) -> None:
    """Teach the spam model that message files are spam or ham.

    A file that is not a mail message is refused and nothing is learnt from
    it; the others are learnt, and the exit status is 1.
    """
    from mailward.content.learn import learn as teach
    from mailward.services import Services

    if spam and ham:
        raise click.UsageError("--spam and --ham exclude each other: the messages of one "
                               "call are all spam or all ham")
    if not (spam or ham):
        console.print("[red]say what the messages are: --spam or --ham[/red]")
        sys.exit(2)
    label = "spam" if spam else "ham"
    services = Services.create(context.settings)
    refused = 0
    for path in _files(paths):
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE)
        problem = not_mail(raw)
        if problem:
            console.print(f"[red]{escape(str(path))}: not learnt, not a mail message: "
                          f"{problem}[/red]")
            refused += 1
            continue
        result = teach(services, raw, label)  # type: ignore[arg-type]
        click.echo(f"{path}: {result.note} as {label}; spam probability "
                   f"{result.before:.4f} -> {result.after:.4f}")
    if refused:
        console.print(f"[red]{refused} of the files were refused[/red]")
        sys.exit(1)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@pass_context
def unlearn(context: Context, paths: tuple[str, ...]) -> None:
    """Take back what learning message files taught the spam model."""
    from mailward.content.learn import unlearn as forget
    from mailward.services import Services

    services = Services.create(context.settings)
    for path in _files(paths):
        with path.open("rb") as handle:
            result = forget(services, handle.read(MAX_FILE))
        click.echo(f"{path}: {result.note}; spam probability "
                   f"{result.before:.4f} -> {result.after:.4f}")


def _run(context, body):
    from mailward.cli import _with_store, run

    return run(_with_store(context.settings, body))


@click.group("vip")
def vip() -> None:
    """Protected people whose names impostors borrow (VIPs)."""


@vip.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--replace", is_flag=True, help="Remove everyone not in the file.")
@click.pass_obj
def vip_import(context, path: str, replace: bool) -> None:
    """Add or update protected people from a CSV file."""
    try:
        people = parse_csv(Path(path).read_text(encoding="utf-8-sig", errors="replace"))
    except DirectoryError as error:
        click.echo(f"{path}: {error}", err=True)
        sys.exit(2)

    async def body(store):
        return await import_people(store, people, replace)

    count = _run(context, body)
    click.echo(f"imported {count} protected people" + (" (directory replaced)"
                                                       if replace else ""))


@vip.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per person.")
@click.pass_obj
def vip_list(context, as_json: bool) -> None:
    """Print the directory of protected people."""
    people = _run(context, load_people)
    for person in people:
        if as_json:
            click.echo(json.dumps({"name": person.name, "addresses": list(person.addresses),
                                   "role": person.role, "aliases": list(person.aliases)}))
        else:
            click.echo(tsv_line(person.name, person.role or "-", ", ".join(person.addresses)))


@vip.command("remove")
@click.argument("name")
@click.pass_obj
def vip_remove(context, name: str) -> None:
    """Remove a protected person by exact name."""

    async def body(store):
        return await remove_person(store, name)

    removed = _run(context, body)
    if not removed:
        click.echo(f"no protected person named {name!r}", err=True)
        sys.exit(1)
    click.echo(f"removed {name}")
