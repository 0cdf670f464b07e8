"""The protected-people directory and the first-contact look-up on SQLite and PostgreSQL."""

from __future__ import annotations

from mailward.config import load_settings
from mailward.content.impostor import ImpostorCheck
from mailward.content.vip import import_people, load_people, parse_csv, remove_person
from mailward.gateway import Gateway
from mailward.pipeline import Task
from tests.content.impostors import PEOPLE_CSV, envelope_for


async def test_directory_import_replace_remove_and_first_contact(tmp_path, database_url):
    settings = load_settings(overrides={"storage.data_dir": str(tmp_path / "data"),
                                        "storage.database_url": database_url,
                                        "smtp.accepted_domains": ["example.com"]})
    gateway = Gateway(settings)
    await gateway.start()
    store = gateway.services.store
    try:
        assert await import_people(store, parse_csv(PEOPLE_CSV), replace=False) == 5
        # Importing a person again updates, never duplicates.
        await import_people(store, parse_csv("name,email,role\nChidi Okonkwo,"
                                             "c.okonkwo@example.com,Chair\n"), replace=False)
        people = {p.name: p for p in await load_people(store)}
        assert len(people) == 5 and people["Chidi Okonkwo"].role == "Chair"
        assert people["Élodie Delacroix-Baptiste"].tokens[-1] == "delacroix-baptiste"
        assert await remove_person(store, "Chidi Okonkwo") == 1
        await import_people(store, parse_csv("name,email\nA Person,a@example.com\n"),
                            replace=True)
        assert [p.name for p in await load_people(store)] == ["A Person"]

        # First contact: no earlier accepted mail between the two, in either direction.
        check = ImpostorCheck.from_services(gateway.services)
        raw = (b"From: Pat Doe <pat@partner.invalid>\r\nTo: finance@example.com\r\n"
               b"Subject: hello\r\nMessage-ID: <fc1@partner.invalid>\r\n\r\nHi.\r\n")
        message = gateway.parse(raw)
        sender = message.from_addresses[0]
        task = Task(envelope_for(1, "pat@partner.invalid", "finance@example.com"),
                    gateway.services, message)
        assert await check.first_contact(task, sender)
        _, verdict, _ = await gateway.judge(envelope_for(2, "pat@partner.invalid",
                                                         "finance@example.com"), raw)
        await gateway.act(envelope_for(2, "pat@partner.invalid", "finance@example.com"),
                          message, verdict)
        assert not await check.first_contact(task, sender)
        other = Task(envelope_for(3, "pat@partner.invalid", "ceo@example.com"),
                     gateway.services, message)
        assert await check.first_contact(other, sender)
    finally:
        await gateway.close()
