"""The openspf RFC 7208 suite as zones for the test DNS server.

Each scenario's ``zonedata`` becomes the zone dict that
``tests.support.dnsserver`` serves, following the conventions of the
suite's reference driver: an SPF-type record is served as TXT unless the
name has TXT records of its own (``TXT: NONE`` means an explicit "no TXT
record"), a bare ``TIMEOUT`` makes every type not listed before it time out,
and a value ``TIMEOUT`` makes only that type time out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load(path: Path) -> list[dict[str, Any]]:
    """load - the scenarios of a suite file."""
    with open(path, encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def zone(zonedata: dict[str, Any]) -> dict[str, Any]:
    """zone - one scenario's zonedata as a test-server zone."""
    result: dict[str, Any] = {}
    for name, records in (zonedata or {}).items():
        entry: dict[str, Any] = {}
        spf: list[Any] = []
        has_txt = False
        timed_out = False
        for record in records:
            if record == "TIMEOUT":
                entry.setdefault("*", "TIMEOUT")
                timed_out = True
                continue
            (kind, value), = record.items()
            if timed_out and kind not in entry:
                entry[kind] = "TIMEOUT"
                continue
            if kind == "SPF":
                if value != "TIMEOUT":
                    spf.append(value)
                continue
            if kind == "TXT":
                has_txt = True
                if value == "NONE":
                    continue
            if value == "TIMEOUT":
                entry[kind] = "TIMEOUT"
                continue
            if kind == "MX":
                value = f"{value[0]} {value[1]}"
            if entry.get(kind) == "TIMEOUT":
                continue
            entry.setdefault(kind, []).append(value)
        if spf and not has_txt:
            entry["TXT"] = spf
        if has_txt and "TXT" not in entry and entry.get("*") != "TIMEOUT":
            entry["TXT"] = []
        result[name] = entry
    return result


def cases(path: Path) -> list[tuple[int, str, dict[str, Any]]]:
    """cases - (scenario index, test name, test) of every test in a suite."""
    found = []
    for index, scenario in enumerate(load(path)):
        for name, test in scenario["tests"].items():
            found.append((index, name, test))
    return found
