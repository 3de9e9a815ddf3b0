"""An experiment whose names, Choice values and failure messages are script and markup payloads.

Every page and terminal that shows it must show the text literally and run nothing: a payload that
runs sets `window.__pwned` (or opens a dialog).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import poptrain
from poptrain import Trainable

IMG = '"><img src=x onerror="window.__pwned=1">'
SCRIPT = "<script>window.__pwned=1</script>"
ALERT = "<svg onload=alert(1)>"
METRIC = f"acc{IMG}"
HPARAM = f"lr{IMG}"
CHOICE_NAME = f"act{SCRIPT}"
CHOICES = (IMG, SCRIPT, "plain")
FAILURE = f"failed {SCRIPT} {ALERT}"
PAYLOADS = (METRIC, HPARAM, CHOICE_NAME, IMG, SCRIPT, FAILURE)


class Payload(Trainable):
    """Climbs towards 1; a member whose Choice is 'plain' raises an error whose message is a payload."""

    def __init__(self, hparams: dict[str, Any], seed: int) -> None:
        super().__init__(hparams, seed)
        self.x = float(np.random.default_rng(seed).uniform(0, 0.5))

    def train(self) -> None:
        if self.hparams[CHOICE_NAME] == "plain":
            raise RuntimeError(FAILURE)
        self.x += self.hparams[HPARAM] * (1.0 - self.x)

    def evaluate(self) -> dict[str, float]:
        return {METRIC: self.x}

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x = state["x"]


def payload_experiment(storage: str, name: str = "payload") -> poptrain.Result:
    """Train the payload experiment on the serial engine: 4 members, one of which fails with a payload message."""
    initial = [{HPARAM: 0.1, CHOICE_NAME: IMG}, {HPARAM: 0.2, CHOICE_NAME: SCRIPT},
               {HPARAM: 0.3, CHOICE_NAME: IMG}, {HPARAM: 0.2, CHOICE_NAME: "plain"}]
    exp = poptrain.Experiment(
        name=name, trainable=Payload, metric=METRIC, population=4, steps=6, ready=poptrain.Every(2), seed=3,
        space={HPARAM: poptrain.Uniform(0.05, 0.5), CHOICE_NAME: poptrain.Choice(CHOICES)}, initial=initial,
        max_failures=1, storage=storage)
    return exp.run(engine="serial")


# names that are rich markup: the terminal must neither crash on them nor show them altered
MARKUP_METRIC = "acc[/]"
MARKUP_LR = "lr[/red]"
MARKUP_DROPOUT = "dropout[p]"
MARKUP_CHOICES = ("[bold]wide", "narrow[/]")


class Markup(Trainable):
    """Climbs towards 1 and reports it under a metric named like terminal markup."""

    def __init__(self, hparams: dict[str, Any], seed: int) -> None:
        super().__init__(hparams, seed)
        self.x = float(np.random.default_rng(seed).uniform(0, 0.5))

    def train(self) -> None:
        self.x += self.hparams[MARKUP_LR] * (1.0 - self.x)

    def evaluate(self) -> dict[str, float]:
        return {MARKUP_METRIC: self.x}

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x = state["x"]
