"""``mailward user``: console accounts from the command line.

``mailward user add admin --role admin`` creates the first administrator
(the password is asked for twice, or read from ``--password-stdin``).
"""

from __future__ import annotations

import getpass
import sys

import click

from mailward.terminal import tsv_line
from mailward.web import audit
from mailward.web.accounts import (MIN_PASSWORD, AccountError, Accounts, UserView,
                                   parse_schedule)


def actor() -> str:
    """actor - who runs the command, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _run(context, body):
    from mailward.cli import _with_store, run

    return run(_with_store(context.settings, body))


def _read_password(from_stdin: bool) -> str:
    """_read_password - one line of stdin, or asked twice; exit 2 if too short."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD:
        raise click.BadParameter(
            f"the password read has {len(password)} characters; it needs at least "
            f"{MIN_PASSWORD}",
            param_hint="--password-stdin" if from_stdin else "password")
    return password


@click.group("user")
def user() -> None:
    """Manage console users (admin, analyst, user)."""


@user.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "analyst", "user"]), default="user",
              show_default=True)
@click.option("--address", "addresses", multiple=True,
              help="An address (or alias) whose mail the user sees; repeatable.")
@click.option("--digest", default="off", show_default=True,
              help="Quarantine digest: off, daily or a number of hours.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_obj
def user_add(context, username: str, role: str, addresses: tuple[str, ...], digest: str,
             password_stdin: bool) -> None:
    """Create a user."""
    password = _read_password(password_stdin)

    async def body(store):
        accounts = Accounts(store)
        created = await accounts.create(username, password, role, list(addresses))
        created = await accounts.update(created.id, digest_every_hours=parse_schedule(digest))
        await audit.record(store, actor(), "admin", "user.add", username, new_role=role,
                           addresses=created.addresses)
        return created

    try:
        created = _run(context, body)
    except AccountError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    click.echo(f"user {created.username} ({created.role}) created, id {created.id}")


@user.command("list")
@click.pass_obj
def user_list(context) -> None:
    """List users."""
    for row in _run(context, lambda store: Accounts(store).list()):
        view = UserView.of(row)
        state = "disabled" if view.disabled else "active"
        click.echo(tsv_line(view.id, view.username, view.role, ",".join(view.addresses),
                            f"digest {view.digest}", state))


@user.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_obj
def user_passwd(context, username: str, password_stdin: bool) -> None:
    """Set a user's password (ends their sessions)."""
    password = _read_password(password_stdin)

    async def body(store):
        accounts = Accounts(store)
        found = await accounts.by_name(username)
        if found is None:
            raise AccountError(f"no user {username!r}")
        changed = await accounts.update(found.id, password=password)
        await audit.record(store, actor(), "admin", "user.change", username,
                           fields=["password"])
        return changed

    try:
        _run(context, body)
    except AccountError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    click.echo(f"password of {username} set")
