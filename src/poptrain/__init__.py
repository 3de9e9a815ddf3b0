"""poptrain: Population Based Training (Jaderberg et al. 2017) for PyTorch and any Python model."""

from .errors import CorruptCheckpoint, PoptrainError, SpecError, StorageError
from .asktell import Connection, Member, connect
from .spec import ExperimentSpec
from .records import Continue, Exploit, Finished, Released
from .experiment import Experiment
from .runner import resume
from .policy import PB2, Every, ExploreFunction, Fire, Noise, Pareto, Perturb, Resample, Tournament, Truncation, TTest
from .space import Choice, IntUniform, LogUniform, Uniform
from .trainable import Trainable

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """Result and load come with pandas; import them on first use, so workers and `--help` start fast."""
    if name in ("BestMember", "Result", "load"):
        from . import result

        return getattr(result, name)
    raise AttributeError(f"module 'poptrain' has no attribute {name!r}")

__all__ = [
    "BestMember", "Choice", "CorruptCheckpoint", "Every", "ExploreFunction", "Continue", "Experiment", "ExperimentSpec", "Exploit", "Finished", "Fire", "IntUniform", "Connection", "Member",
    "Released", "connect", "LogUniform",
    "Noise", "PB2", "Pareto", "Perturb", "PoptrainError", "Resample", "Result", "SpecError", "StorageError", "TTest", "Tournament",
    "Trainable", "Truncation", "Uniform", "load", "resume",
]
