"""A synthetic language pair made by code: English-like SVO sentences and their verb-final translations.

The source language puts determiner, adjectives and noun in that order, the verb between
subject and object, and prepositions before their noun; plural nouns take an `-s` form and a
present-tense verb agrees with a singular subject. The target language reorders all of that:
subject, object, then an optional postpositional phrase, then the verb (SOV); inside a noun
phrase the noun comes first, then its adjectives, then the determiner. Every noun has a
grammatical gender, and its adjectives and determiner agree with it in gender and number; the
verb carries one suffix for tense and the subject's number. Vocabularies are a few hundred word
forms on each side, so a translator must learn the word mapping, the reordering and the
agreement; greedy decoding of a small model gets part of it right early and most of it late.

Everything is drawn from seeded generators: `corpus(n, seed)` returns the same pairs every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

LEXICON_SEED = 14
NOUNS, VERBS, ADJECTIVES = 50, 30, 30
PREPOSITIONS = ("in", "on", "near", "under", "with", "behind", "without", "beside")
DETERMINERS = ("the", "a", "this", "every")
TENSES = ("present", "past", "future")
CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
FINALS = "bdgklmnprtvz"  # no word ends in s, so a plural or third-person -s form never equals another word
# the target's inflections: determiners and adjectives by (gender, number), verbs by (tense, number)
AGREEMENT = {("m", "sg"): "o", ("m", "pl"): "os", ("f", "sg"): "a", ("f", "pl"): "as"}
VERB_ENDINGS = {("present", "sg"): "et", ("present", "pl"): "ent", ("past", "sg"): "it", ("past", "pl"): "int",
                ("future", "sg"): "ur", ("future", "pl"): "urn"}


@dataclass(frozen=True)
class Lexicon:
    """Word stems of both languages, paired, and each target noun's gender."""

    nouns: list[tuple[str, str, str]]  # (source, target stem, gender)
    verbs: list[tuple[str, str]]
    adjectives: list[tuple[str, str]]
    prepositions: list[tuple[str, str]]
    determiners: list[tuple[str, str]]


def _words(rng: np.random.Generator, count: int, taken: set[str], syllables: tuple[int, int]) -> list[str]:
    """`count` new pronounceable pseudo-words (consonant-vowel syllables), none already in `taken`."""
    words: list[str] = []
    while len(words) < count:
        n = int(rng.integers(syllables[0], syllables[1] + 1))
        word = "".join(CONSONANTS[rng.integers(len(CONSONANTS))] + VOWELS[rng.integers(len(VOWELS))] for _ in range(n))
        word += FINALS[rng.integers(len(FINALS))] if rng.random() < 0.5 else ""
        if word not in taken:
            taken.add(word)
            words.append(word)
    return words


@lru_cache(maxsize=4)
def lexicon(seed: int = LEXICON_SEED) -> Lexicon:
    """The two vocabularies, drawn from `seed` (the default one is the language the example learns)."""
    rng = np.random.default_rng(seed)
    taken: set[str] = set(PREPOSITIONS) | set(DETERMINERS) | {"will"}
    source = _words(rng, NOUNS + VERBS + ADJECTIVES, taken, (1, 2))
    target = _words(rng, NOUNS + VERBS + ADJECTIVES + len(PREPOSITIONS) + len(DETERMINERS), taken, (2, 3))
    genders = rng.choice(["m", "f"], size=NOUNS)
    nouns = [(source[i], target[i], str(genders[i])) for i in range(NOUNS)]
    verbs = list(zip(source[NOUNS:NOUNS + VERBS], target[NOUNS:NOUNS + VERBS]))
    adjectives = list(zip(source[NOUNS + VERBS:], target[NOUNS + VERBS:NOUNS + VERBS + ADJECTIVES]))
    rest = target[NOUNS + VERBS + ADJECTIVES:]
    return Lexicon(nouns, verbs, adjectives, list(zip(PREPOSITIONS, rest[:len(PREPOSITIONS)])),
                   list(zip(DETERMINERS, rest[len(PREPOSITIONS):])))


def _noun_phrase(lex: Lexicon, rng: np.random.Generator) -> tuple[list[str], list[str], str]:
    """A noun phrase in both languages and its number: 'the big red dogs' -> 'dogi bigos redos theos'."""
    noun_source, noun_target, gender = lex.nouns[rng.integers(len(lex.nouns))]
    number = "pl" if rng.random() < 0.4 else "sg"
    det_source, det_target = lex.determiners[rng.integers(len(lex.determiners))]
    if number == "pl" and det_source in ("a", "every"):
        det_source, det_target = lex.determiners[0]  # 'a dogs' is not a phrase: plural takes 'the'
    adjectives = [lex.adjectives[i] for i in rng.choice(len(lex.adjectives), size=rng.integers(0, 3), replace=False)]
    ending = AGREEMENT[(gender, number)]
    source = [det_source] + [a[0] for a in adjectives] + [noun_source + ("s" if number == "pl" else "")]
    target = [noun_target + ("i" if number == "pl" else "")] + [a[1] + ending for a in adjectives] + [det_target + ending]
    return source, target, number


def sentence(lex: Lexicon, rng: np.random.Generator) -> tuple[str, str]:
    """One sentence pair: subject, verb, object and maybe a prepositional phrase, in both word orders."""
    subject_source, subject_target, number = _noun_phrase(lex, rng)
    object_source, object_target, _ = _noun_phrase(lex, rng)
    verb_source, verb_target = lex.verbs[rng.integers(len(lex.verbs))]
    tense = TENSES[rng.integers(len(TENSES))]
    if tense == "past":
        verb = [verb_source + "ed"]
    elif tense == "future":
        verb = ["will", verb_source]
    else:
        verb = [verb_source + ("s" if number == "sg" else "")]
    source = subject_source + verb + object_source
    target = subject_target + object_target
    if rng.random() < 0.5:
        prep_source, prep_target = lex.prepositions[rng.integers(len(lex.prepositions))]
        phrase_source, phrase_target, _ = _noun_phrase(lex, rng)
        source += [prep_source] + phrase_source
        target += phrase_target + [prep_target]
    target += [verb_target + VERB_ENDINGS[(tense, number)]]
    return " ".join(source), " ".join(target)


def corpus(n: int, seed: int) -> list[tuple[str, str]]:
    """`n` sentence pairs drawn from `seed` (the same pairs for the same arguments, on any machine)."""
    rng = np.random.default_rng([seed, 0xB1E0])
    lex = lexicon()
    return [sentence(lex, rng) for _ in range(n)]
