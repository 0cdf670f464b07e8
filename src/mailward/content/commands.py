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
import sys
from pathlib import Path

import click
from rich.console import Console

from mailward.cli import Context, pass_context
from mailward.content.vip import (
    DirectoryError,
    import_people,
    load_people,
    parse_csv,
    remove_person,
)

console = Console(stderr=True)
MAX_FILE = 64 * 1024 * 1024


def _files(paths: tuple[str, ...]) -> list[Path]:
    from mailward.content.train import message_files

    found = message_files(Path(p) for p in paths)
    if not found:
        console.print("[red]no message files found in the paths given[/red]")
        sys.exit(1)
    return found


@click.command()
@click.option("--spam", "label", flag_value="spam", help="The messages are spam.")
@click.option("--ham", "label", flag_value="ham", help="The messages are legitimate.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@pass_context
def learn(context: Context, label: str | None, paths: tuple[str, ...]) -> None:
    """Teach the spam model that message files are spam or ham."""
    from mailward.content.learn import learn as teach
    from mailward.services import Services

    if label is None:
        console.print("[red]say what the messages are: --spam or --ham[/red]")
        sys.exit(2)
    services = Services.create(context.settings)
    for path in _files(paths):
        with path.open("rb") as handle:
            result = teach(services, handle.read(MAX_FILE), label)  # type: ignore[arg-type]
        click.echo(f"{path}: {result.note} as {label}; spam probability "
                   f"{result.before:.4f} -> {result.after:.4f}")


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
            click.echo(f"{person.name}\t{person.role or '-'}\t{', '.join(person.addresses)}")


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
