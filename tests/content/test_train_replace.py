"""``mailward train`` replaces a live model only with one not worse on held-out mail.

Real runs of the command on small slices of the SpamAssassin corpus: a model
trained on a folder without the hard ham, or with the folders swapped, is
kept beside the live one, which stays, until the administrator says --force.
"""

from __future__ import annotations

import pytest

from tests.content.conftest import corpus_slice


@pytest.fixture
def site(corpus, tmp_path):
    """site - folders of ham (easy and hard), the same ham less the hard, and spam."""
    easy = [p for p in corpus_slice("spam/ham", 0, 2547, step=25)][:80]
    hard = [p for p in corpus_slice("spam/ham", 2547, 50)]
    assert all(p.name.startswith("hard_ham") for p in hard)
    assert not any(p.name.startswith("hard_ham") for p in easy)
    folders = {}
    for name, files in (("ham", easy + hard), ("easy", easy),
                        ("spam", corpus_slice("spam/spam", 0, 100, step=10))):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        for path in files:
            (folders[name] / path.name).write_bytes(path.read_bytes())
    config = tmp_path / "mailward.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    return folders, config, tmp_path / "data"


def train(config, ham, spam, *more):
    from click.testing import CliRunner

    from mailward.cli import main

    answer = CliRunner().invoke(main, ["-c", str(config), "train", "--ham", str(ham),
                                       "--spam", str(spam), *more])
    assert "Traceback" not in answer.output
    return answer.exit_code, " ".join(answer.output.split())


def test_a_model_without_the_hard_ham_is_kept_aside_until_forced(site):
    folders, config, data = site
    live, candidate = data / "spam-model.npz", data / "spam-model.candidate.npz"
    code, output = train(config, folders["ham"], folders["spam"])
    assert code == 0 and f"spam model written to {live}" in output, output
    good = live.read_bytes()

    # Trained again on the same mail, it is no worse, and replaces the live one.
    code, output = train(config, folders["ham"], folders["spam"])
    assert code == 0 and "new spam model" in output and "live spam model" in output, output
    assert f"spam model written to {live}" in output and not candidate.exists()
    good = live.read_bytes()

    # Without the hard ham it flags the hard ham the live one was trained from.
    code, output = train(config, folders["easy"], folders["spam"])
    assert code == 1, output
    assert "spam model not replaced: on the same" in output
    # The easy ham are copies of ham the live model was trained from: counted once.
    from mailward.content.train import held_out
    ham_held = sum(held_out(p, 0.2) for p in folders["ham"].iterdir())
    assert f"on the same {ham_held} ham and" in output, output
    assert "spam held out (never fitted on by the new model), it" in output
    assert "of ham at p >= 0.5 (live: " in output or "with ham flagged <= 0.1%" in output
    assert f"The live model at {live} is kept" in output
    assert f"the new one is written to {candidate}" in output
    assert "run again with --force" in output
    assert live.read_bytes() == good and candidate.exists()

    code, output = train(config, folders["easy"], folders["spam"], "--force")
    assert code == 0 and f"spam model at {live} replaced (--force)" in output, output
    assert live.read_bytes() != good
    # The forced replacement can be undone, and the stale candidate is gone.
    previous = data / "spam-model.previous.npz"
    assert f"kept as {previous}" in output
    assert previous.read_bytes() == good and not candidate.exists()


def test_swapped_folders_and_no_held_out_part_do_not_replace_the_live_model(site):
    from mailward.content.model import LinearModel

    folders, config, data = site
    live = data / "spam-model.npz"
    assert train(config, folders["ham"], folders["spam"])[0] == 0
    good = live.read_bytes()
    assert LinearModel.load(live).meta["trained_from"]["ham"] == [str(folders["ham"])]

    # The spam given as ham: scored on the kind the live model learnt each file as.
    code, output = train(config, folders["spam"], folders["ham"])
    assert code == 1 and "were given as another kind when the live model" in output, output
    assert "it catches 0.00% of spam" in output and live.read_bytes() == good

    code, output = train(config, folders["ham"], folders["spam"], "--holdout", "0")
    assert code == 1, output
    assert ("spam model not replaced: no comparison with the live model was possible: "
            "--holdout 0 holds no message out of training") in output
    assert live.read_bytes() == good
    code, output = train(config, folders["ham"], folders["spam"], "--holdout", "0",
                         "--force")
    assert code == 0 and "replaced (--force)" in output and live.read_bytes() != good


def test_a_file_that_is_no_model_is_replaced_only_when_forced(site):
    folders, config, data = site
    data.mkdir()
    (data / "spam-model.npz").write_bytes(b"not a model")
    code, output = train(config, folders["ham"], folders["spam"])
    assert code == 1 and "the file it would replace cannot be read as a model" in output
    assert (data / "spam-model.npz").read_bytes() == b"not a model"
    code, output = train(config, folders["ham"], folders["spam"], "--force")
    assert code == 0 and "replaced (--force)" in output


def test_the_language_and_embedding_models_are_kept_when_phishing_and_ham_swap(corpus,
                                                                               tmp_path):
    from mailward.content import embedding
    from tests.content.test_spam_model import training_folders

    folders, config = training_folders(tmp_path, (("ham", "spam/ham", 3, 40, 40),
                                                  ("spam", "spam/spam", 3, 30, 20),
                                                  ("phishing", "phishing", 3, 40, 15)))
    data = tmp_path / "data"
    kinds = ["spam", "language"] + (["embedding"] if embedding.available() else [])
    code, output = train(config, folders["ham"], folders["spam"], "--phishing",
                         str(folders["phishing"]), "--holdout", "0.3")
    assert code == 0, output
    before = {kind: (data / f"{kind}-model.npz").read_bytes() for kind in kinds}

    code, output = train(config, folders["phishing"], folders["spam"], "--phishing",
                         str(folders["ham"]), "--holdout", "0.3")
    assert code == 1, output
    for kind in kinds:
        assert f"{kind} model not replaced: on the same" in output, kind
        assert (data / f"{kind}-model.npz").read_bytes() == before[kind], kind
        assert (data / f"{kind}-model.candidate.npz").exists(), kind
    assert "live language model" in output and "written to" not in output.replace(
        "is written to", "")
