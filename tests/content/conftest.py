"""Fixtures of the content tests: slices of the shared corpus, a scratch site."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import need
from tests.support.gateway import SHARED

CORPUS = SHARED / "corpus"


def corpus_slice(folder: str, start: int, count: int, step: int = 1) -> list[Path]:
    """corpus_slice - count files of a corpus folder, by name, from start on,
    every step-th (a step spreads a slice over the folder's sub-corpora)."""
    files = sorted(p for p in (CORPUS / folder).iterdir()
                   if p.is_file() and p.suffix not in (".md", ".tsv"))
    return files[start::step][:count]


@pytest.fixture(scope="session")
def corpus() -> Path:
    need((CORPUS / "spam" / "ham").is_dir(), f"the shared corpus at {CORPUS}")
    return CORPUS


@pytest.fixture
def services(tmp_path):
    from mailward.config import load_settings
    from mailward.services import Services

    return Services.create(load_settings(overrides={"storage.data_dir": str(tmp_path / "data")}))
