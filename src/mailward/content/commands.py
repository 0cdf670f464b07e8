"""``mailward vip``: the directory of protected people, from the command line.

``mailward vip import people.csv`` reads a CSV file with a header row
(name, email, and optionally role and aliases; several addresses or aliases
are separated by ``;``) and adds or updates those people; ``--replace``
makes the directory exactly the file. ``mailward vip list`` prints it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mailward.content.vip import (
    DirectoryError,
    import_people,
    load_people,
    parse_csv,
    remove_person,
)


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
