"""``mailward url``: decode rewritten links, manage signing keys, list a message's links."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mailward.terminal import tsv_line


@click.group("url")
def url() -> None:
    """URL defence: decode rewritten links, rotate signing keys, extract links."""


def _settings():
    """_settings - the settings of the running command."""
    from mailward.cli import Context

    return click.get_current_context().find_object(Context).settings


def _keys(settings):
    """_keys - the key ring the settings name."""
    from mailward.urls.signing import KeyRing

    path = settings.urls.keys_file or str(settings.data_dir / "url-keys.json")
    return KeyRing(Path(path))


@url.command("decode")
@click.argument("link")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def decode(link: str, as_json: bool) -> None:
    """Print the original URL of a rewritten link and whether its signature holds."""
    from mailward.cli import run
    from mailward.store import Store
    from mailward.store.models import MessageRecord
    from mailward.urls.signing import KeysError, Signer

    settings = _settings()
    try:
        keys = _keys(settings)
        keys.load(create=False)
    except KeysError as error:
        click.echo(str(error), err=True)
        sys.exit(2)
    signer = Signer(keys, settings.click_base)
    result = signer.decode(link)

    async def recipients() -> list[str]:
        """recipients - the message's recipients from the store."""
        from sqlalchemy import select

        store = Store(settings.database_url)
        try:
            await store.migrate()
            async with store.session() as session:
                return list(await session.scalar(select(MessageRecord.recipients).where(
                    MessageRecord.queue_id == result.queue_id)) or [])
        finally:
            await store.close()

    recipient = signer.recipient_of(result, run(recipients())) if result.valid else None
    data = {"valid": result.valid, "problem": result.problem, "url": result.url,
            "queue_id": result.queue_id, "key_id": result.key_id, "recipient": recipient}
    if as_json:
        click.echo(json.dumps(data))
    elif result.valid:
        click.echo(result.url)
        click.echo(f"queue id {result.queue_id}, recipient {recipient or 'unknown'}, "
                   f"key {result.key_id}", err=True)
    else:
        click.echo(f"not a valid mailward link: {result.problem}", err=True)
    sys.exit(0 if result.valid else 1)


@url.group("keys")
def keys() -> None:
    """Signing keys of rewritten links (the newest signs, all verify)."""


@keys.command("list")
def keys_list() -> None:
    """List key ids and when they were made (never the secrets)."""
    ring = _keys(_settings())
    ring.load()
    current = ring.current.id
    for key in ring.keys():
        click.echo(f"{key.id}\t{key.created}\t{'signing' if key.id == current else 'verifying'}")


@keys.command("rotate")
def keys_rotate() -> None:
    """Make a new signing key; links signed with the old ones keep working."""
    key = _keys(_settings()).rotate()
    click.echo(f"key {key.id} now signs new links (running gateways pick it up within a second)")


@keys.command("retire")
@click.argument("key_id")
def keys_retire(key_id: str) -> None:
    """Drop a key: links it signed stop working (answered 400)."""
    if not _keys(_settings()).retire(key_id):
        click.echo(f"no key {key_id} to retire (the last key cannot be retired)", err=True)
        sys.exit(1)
    click.echo(f"key {key_id} retired")


@url.command("extract")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
def extract(paths: tuple[str, ...], as_json: bool) -> None:
    """List the links of message files, each with where it was found."""
    from mailward.message import Message
    from mailward.mime import Limits

    settings = _settings()
    pipeline = settings.pipeline
    for path in paths:
        message = Message(Path(path).read_bytes()[:settings.smtp.max_message_size],
                          limits=Limits(pipeline.max_mime_depth, pipeline.max_mime_parts),
                          max_text_bytes=pipeline.max_text_bytes)
        message.max_urls = settings.urls.max_urls
        extraction = message.url_extraction
        if as_json:
            click.echo(json.dumps({
                "file": path, "truncated": extraction.truncated,
                "urls": [{"url": u.url, "where": u.where, "part": u.part, "text": u.text}
                         for u in extraction.places],
                "scripts": [{"scheme": s.scheme, "value": s.value, "where": s.where}
                            for s in extraction.scripts]}))
            continue
        for found in extraction.places:
            shown = [f"[{found.text}]"] if found.text else []
            click.echo(tsv_line(found.url, found.where, found.part or "-", *shown))
        for script in extraction.scripts:
            click.echo(tsv_line(script.value[:120], script.where, script.part or "-"))
