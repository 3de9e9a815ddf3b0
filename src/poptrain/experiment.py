"""An experiment as a user writes it: the spec plus the verbs that run it, from Python or a TOML file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .engines import make_engine
from .errors import SpecError
from .runner import create, run
from .spec import ExperimentSpec
from .specfile import read_toml, spec_paths

if TYPE_CHECKING:
    from .result import Result


@dataclass
class Experiment(ExperimentSpec):
    """What to train and how PBT runs it; `run()` trains the population and returns a `Result`.

    `steps` is each member's budget in intervals (calls of `train()`); `exploit=None` trains the
    same members with no exploit at all (the random-search baseline at equal compute); `engine`
    is how `run()` trains by default: a name ("local", "serial", "vectorized", "ray"), a table
    {"type": "local", "workers": 2}, or an engine object such as `poptrain.engines.Local(workers=2)`.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.engine is not None:
            make_engine(self.engine)  # an unknown engine or option is refused before anything is stored

    def create(self, wait: bool = False) -> bool:
        """Store the experiment unless it is there already; True if created, False if it was stored.

        `wait` rides out a database that is briefly unreachable, as a worker does.
        """
        return create(self, wait)

    def run(self, engine: Any = None, *, progress: bool = False, force: bool = False, **options: Any) -> "Result":
        """Train the population to its budget (resuming a stored run of the same spec).

        `engine` is a name or an engine object (default: the spec's, else "local"); `options` set
        a named engine's options, e.g. `run(engine="local", workers=2)`. A stored run whose members
        are still leased is being trained by live workers: it is refused (join it with `poptrain
        worker`) unless `force` says those workers are dead.
        """
        return run(self, engine, progress=progress, force=force, **options)


def load_spec(path: str | os.PathLike[str], **overrides: Any) -> Experiment:
    """Build the Experiment a TOML file describes; overrides (None = not given) win over its fields."""
    path_str = os.fspath(path)
    data = read_toml(path_str)
    data["paths"] = spec_paths(data, os.path.dirname(os.path.abspath(path_str)), path_str)
    try:
        return Experiment.from_spec(data, **overrides)
    except SpecError as exc:
        raise SpecError(f"{path_str}: {exc}") from None
