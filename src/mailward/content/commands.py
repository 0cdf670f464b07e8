"""``mailward learn`` and ``mailward unlearn``: feedback from files.

Both go through ``content.learn``, the same code a "not spam" release and a
user report use, and change the site's model in the data directory; a
running gateway picks the change up by itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from mailward.cli import Context, pass_context

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
