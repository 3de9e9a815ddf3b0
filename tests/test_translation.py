"""The translation example: its synthetic corpus, its BLEU, its members, and a toy PBT run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

import synthetic_language as language  # noqa: E402
import translation  # noqa: E402
from poptrain import Every  # noqa: E402
from poptrain.experiment import load_spec  # noqa: E402

GOOD = {"lr": 1e-2, "dropout": 0.0, "label_smoothing": 0.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_corpus_is_deterministic() -> None:
    assert language.corpus(40, 3) == language.corpus(40, 3)
    assert language.corpus(40, 3) != language.corpus(40, 4)
    # the same language on every machine and version: the first pair of seed 0, written down once
    assert language.corpus(1, 0)[0] == ("this mikin difam will gizo the ziva",
                                        "loru somotuza mukavea kinuzad sofosea kupebur")


def test_vocabularies_hold_a_few_hundred_word_forms() -> None:
    pairs = language.corpus(3000, 0)
    source = {w for s, _ in pairs for w in s.split()}
    target = {w for _, t in pairs for w in t.split()}
    assert 200 < len(source) < 600 and 200 < len(target) < 600


def test_word_order_changes_and_the_verb_goes_last() -> None:
    lex = language.lexicon()
    verbs = {v[1] for v in lex.verbs}
    endings = set(language.VERB_ENDINGS.values())
    for source, target in language.corpus(200, 5):
        s, t = source.split(), target.split()
        # one target word per source word, except that 'will' becomes the verb's ending
        assert len(t) == len(s) - s.count("will")
        stem = next(v for v in verbs if t[-1].startswith(v) and t[-1][len(v):] in endings)
        assert stem not in t[:-1]
        assert s[0] in language.DETERMINERS and t[-1] != s[-1]  # source starts with a determiner, target ends with a verb


def test_adjectives_and_determiners_agree_with_their_noun() -> None:
    lex = language.lexicon()
    rng = np.random.default_rng(0)
    nouns = {n[0]: (n[1], n[2]) for n in lex.nouns}  # source stem: (target stem, gender)
    seen = set()
    for _ in range(300):
        source, target, number = language._noun_phrase(lex, rng)
        stem, gender = nouns[source[-1][:-1] if number == "pl" else source[-1]]
        assert source[-1].endswith("s") == (number == "pl")  # no source noun stem ends in s
        assert target[0] == stem + ("i" if number == "pl" else "")
        ending = language.AGREEMENT[(gender, number)]
        assert all(word.endswith(ending) for word in target[1:]) and len(target) == len(source)
        seen.add((gender, number))
    assert len(seen) == 4


def test_bleu_of_the_reference_is_100_and_of_nothing_0() -> None:
    references = [t for _, t in language.corpus(50, 2)]
    assert translation.bleu(references, references) == pytest.approx(100.0)
    assert translation.bleu([""] * len(references), references) == 0.0
    shuffled = references[1:] + references[:1]
    assert 0.0 <= translation.bleu(shuffled, references) < 20.0


def test_members_are_reproducible_learn_and_round_trip() -> None:
    a, b = translation.Translation(GOOD, 3), translation.Translation(GOOD, 3)
    for _ in range(2):
        a.train()
        b.train()
    assert a.evaluate() == b.evaluate()
    state, score = a.state_dict(), a.evaluate()
    a.train()
    copy = translation.Translation({"lr": 1e-3, "dropout": 0.3, "label_smoothing": 0.2}, 9)
    copy.load_state_dict(state)
    assert copy.evaluate() == score
    copy.set_hparams(GOOD)
    assert copy.optimizer.param_groups[0]["lr"] == 1e-2
    copy.train()
    assert copy.evaluate() == a.evaluate()  # same weights, Adam state, data order, dropout masks and hparams


def test_dropout_reaches_every_layer() -> None:
    member = translation.Translation(GOOD, 0)
    member.set_hparams({**GOOD, "dropout": 0.25})
    dropouts = [m.p for m in member.model.modules() if isinstance(m, torch.nn.Dropout)]
    attention = [m.dropout for m in member.model.modules() if isinstance(m, torch.nn.MultiheadAttention)]
    assert dropouts and attention and set(dropouts) == set(attention) == {0.25}


def test_a_trained_member_translates_better_than_a_fresh_one() -> None:
    member = translation.Translation(GOOD, 0)
    before = member.evaluate()["bleu"]
    for _ in range(8):
        member.train()
    assert member.evaluate()["bleu"] > before
    assert len(member.translate(["the difam will gizo the ziva"])) == 1


def test_toy_pbt_run_maximises_bleu(tmp_path) -> None:
    exp = load_spec(EXAMPLES / "translation.toml", storage=f"sqlite:///{tmp_path}/mt.db", population=2, steps=2)
    exp.ready = Every(1)
    assert exp.metric == "bleu" and set(exp.space) == {"lr", "dropout", "label_smoothing"}
    members = exp.run(engine="serial").members()
    assert set(members.status) == {"done"} and len(members) == 2
    assert ((members.score >= 0) & (members.score <= 100)).all()
