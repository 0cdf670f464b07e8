"""The sentence-embedding model (the embeddings extra), trained here on a slice of
the corpus and measured on another."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import need
from tests.content.conftest import corpus_slice
from tests.content.test_spam_model import training_folders


def python(code: str, timeout: float) -> subprocess.CompletedProcess:
    """python - run code in a fresh interpreter; it must exit 0."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def extra():
    from mailward.content.embedding import EXTRA, available

    need(available(), f"the embeddings extra ({EXTRA})")


@pytest.fixture(scope="module")
def trained(corpus, extra):
    from mailward.content.embedding import train_embedding

    ham = corpus_slice("spam/ham", 0, 250, step=8)
    phishing = corpus_slice("phishing", 0, 150, step=4)
    return train_embedding(ham, phishing, holdout=0.25)


def log_odds(model, files: list[Path]) -> np.ndarray:
    from mailward.content.embedding import embed_files

    return model.log_odds(embed_files(files))


def test_a_model_trained_on_one_slice_sorts_another(trained):
    ham = log_odds(trained.model, corpus_slice("spam/ham", 1, 250, step=8))
    phishing = log_odds(trained.model, corpus_slice("phishing", 1, 150, step=4))
    assert np.mean(phishing > 0) > 0.85
    assert np.mean(ham > 0) < 0.03
    # Both signs: mail unlike phishing is pushed down, within the clip.
    assert np.median(ham) < -2 and ham.min() >= -10 and phishing.max() <= 10


def test_training_reports_its_held_out_quality(trained):
    rows = dict(trained.quality.rows())
    assert rows["held-out messages"].endswith("phishing") and float(rows["AUC"]) > 0.95
    assert trained.model.meta["ham"] == 250 and trained.model.meta["phishing"] == 150
    assert trained.model.meta["held_out"] == rows


def test_the_saved_model_loads_without_pickle_and_scores_the_same(trained, tmp_path):
    from mailward.content.embedding import EmbeddingModel, embed_files

    path = tmp_path / "embedding-model.npz"
    trained.model.save(path)
    loaded = EmbeddingModel.load(path)
    vectors = embed_files(corpus_slice("phishing", 2, 5, step=9))
    assert np.array_equal(loaded.log_odds(vectors), trained.model.log_odds(vectors))
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"coef", "intercept", "calibration", "meta"}


def test_a_file_that_is_not_an_embedding_model_is_refused_by_name(tmp_path):
    from importlib import resources

    from mailward.content.embedding import EmbeddingModel

    spam_model = Path(str(resources.files("mailward").joinpath("data/spam-model.npz")))
    for path in (spam_model, Path("/etc/passwd"), tmp_path / "missing.npz"):
        with pytest.raises(ValueError, match=str(path)):
            EmbeddingModel.load(path)


async def test_the_check_speaks_through_the_pipeline_symbol_both_ways(trained, services):
    from mailward.content.embedding import EmbeddingCheck, embedding_model_path
    from mailward.content.features import spam_tokens
    from mailward.envelope import Envelope
    from mailward.message import Message
    from mailward.pipeline import Task
    from mailward.registry import load_site_scores

    assert EmbeddingCheck.from_services(services) is None  # no model trained here
    trained.model.save(embedding_model_path(services))
    check = EmbeddingCheck.from_services(services)

    async def finding(path: Path):
        task = Task(Envelope(queue_id="e1"), services, Message(path.read_bytes()))
        found = await check.check(task)
        assert [f.symbol for f in found] == ["LANG_EMBED_PHISH"]
        return found[0], task.message

    lure, message = await finding(corpus_slice("phishing", 2, 1, step=4)[0])
    assert lure.weight > 0 and lure.category == "phish" and "phishing likeness" in lure.detail
    # Another classifier's verdict, never a feature of the spam model.
    assert not any("EMBED" in token for token in spam_tokens(message, [lure]))
    ordinary, _ = await finding(corpus_slice("spam/ham", 2, 1, step=8)[0])
    assert ordinary.weight < 0
    assert load_site_scores(services.settings).rule("LANG_EMBED_PHISH").score > 0


def test_a_configured_model_that_is_missing_stops_the_check_by_name(extra, tmp_path):
    from mailward.config import load_settings
    from mailward.content.embedding import EmbeddingCheck
    from mailward.services import Services

    settings = load_settings(overrides={"storage.data_dir": str(tmp_path / "data"),
                                        "spam.embedding_model": str(tmp_path / "no.npz")})
    with pytest.raises(ValueError, match="spam.embedding_model: .*no.npz does not exist"):
        EmbeddingCheck.from_services(Services.create(settings))


def test_loading_the_embedder_leaves_the_root_logger_alone(extra):
    code = ("import logging, sys\n"
            "from mailward.content.embedding import Embedder\n"
            "root = logging.getLogger(); before = (list(root.handlers), root.level)\n"
            "Embedder.shared()\n"
            "assert (list(root.handlers), root.level) == before, (root.handlers, root.level)\n"
            "print('ok')\n")
    result = python(code, 120)
    assert "ok" in result.stdout
    assert result.stderr == ""


def test_without_a_model_the_gateway_never_imports_wordllama(tmp_path):
    # The default install stays light: the extra is read only when a model is there.
    code = ("import sys\n"
            "from mailward.config import load_settings\n"
            "from mailward.registry import build_checks\n"
            "from mailward.services import Services\n"
            f"settings = load_settings(overrides={{'storage.data_dir': {str(tmp_path)!r}}})\n"
            "names = [c.name for c in build_checks(Services.create(settings))]\n"
            "assert 'embedding' not in names and 'language' in names, names\n"
            "assert 'wordllama' not in sys.modules\n"
            "print('ok')\n")
    result = python(code, 120)
    assert "ok" in result.stdout


def test_train_writes_the_embedding_model_and_config_check_loads_it(corpus, extra, tmp_path):
    from click.testing import CliRunner

    from mailward.cli import main

    folders, config = training_folders(tmp_path, (("ham", "spam/ham", 3, 30, 40),
                                                  ("spam", "spam/spam", 3, 30, 20),
                                                  ("phishing", "phishing", 3, 30, 20)))
    answer = CliRunner().invoke(main, ["-c", str(config), "train", "--ham", str(folders["ham"]),
                                       "--spam", str(folders["spam"]),
                                       "--phishing", str(folders["phishing"]),
                                       "--holdout", "0.3"])
    assert answer.exit_code == 0, answer.output
    model = tmp_path / "data" / "embedding-model.npz"
    assert f"embedding model written to {model}" in answer.output.replace("\n", "")
    assert "embedding model" in answer.output and "held-out quality" in answer.output
    # Phishing against ham; the spam trains the other models only.
    from mailward.content.embedding import EmbeddingModel

    meta = EmbeddingModel.load(model).meta
    assert (meta["ham"], meta["spam"], meta["phishing"]) == (30, 0, 30)
    assert re.fullmatch(r"\d+ ham, \d+ phishing", meta["held_out"]["held-out messages"])

    def config_check(value: Path) -> subprocess.CompletedProcess:
        config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n'
                          f'[spam]\nembedding_model = "{value}"\n')
        return subprocess.run([sys.executable, "-m", "mailward", "config", "check",
                               str(config)], capture_output=True, text=True, timeout=120)

    result = config_check(model)
    assert result.returncode == 0 and "configuration ok" in result.stdout, result.stderr
    language = tmp_path / "data" / "language-model.npz"
    result = config_check(language)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"spam.embedding_model: {language}: not a model of the" in result.stderr


def test_the_embeddings_extra_is_optional_and_pinned():
    import tomllib

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert not any("wordllama" in d for d in project["project"]["dependencies"])
    assert project["project"]["optional-dependencies"]["embeddings"] == ["wordllama>=0.4,<0.5"]
    assert "embeddings" in (Path(__file__).parents[2] / "scripts" / "test").read_text()


def test_without_the_extra_training_says_it_skipped_the_model(corpus, tmp_path):
    # As on an install without the extra: the import of wordllama fails.
    folders, config = training_folders(tmp_path, (("ham", "spam/ham", 3, 25, 40),
                                                  ("phishing", "phishing", 3, 25, 20)))
    code = ("import sys\n"
            "sys.modules['wordllama'] = None\n"
            "from mailward.cli import main\n"
            f"main(['-c', {str(config)!r}, 'train', '--ham', {str(folders['ham'])!r},"
            f" '--phishing', {str(folders['phishing'])!r}, '--min-messages', '20'])\n")
    result = python(code, 300)
    assert ("embedding model skipped: the embeddings extra is not installed "
            "(pip install 'mailward[embeddings]')") in result.stdout
    assert "language model written to" in result.stdout
    assert not (tmp_path / "data" / "embedding-model.npz").exists()


def test_without_the_extra_a_trained_model_is_left_unused_and_a_configured_one_refused(
        tmp_path):
    model = tmp_path / "data" / "embedding-model.npz"
    model.parent.mkdir()
    model.write_bytes(b"PK\x03\x04 not read without the extra")
    code = ("import sys\n"
            "sys.modules['wordllama'] = None\n"
            "from mailward.config import load_settings\n"
            "from mailward.content.embedding import EmbeddingCheck\n"
            "from mailward.services import Services\n"
            f"data = {{'storage.data_dir': {str(model.parent)!r}}}\n"
            "assert EmbeddingCheck.from_services(Services.create(load_settings("
            "overrides=data))) is None\n"
            f"data['spam.embedding_model'] = {str(model)!r}\n"
            "try:\n"
            "    EmbeddingCheck.from_services(Services.create(load_settings(overrides=data)))\n"
            "except ValueError as error:\n"
            "    print(error)\n")
    result = python(code, 120)
    assert "the embeddings extra is not installed" in result.stderr  # the warning
    assert (f"spam.embedding_model: reading {model} needs the embeddings extra "
            "(pip install 'mailward[embeddings]')") in result.stdout
