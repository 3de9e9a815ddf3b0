"""poptrain: Population Based Training (Jaderberg et al. 2017) for PyTorch and any Python model."""

from .errors import CorruptCheckpoint, PoptrainError, SpecError, StorageError
from .experiment import Experiment, resume
from .policy import Custom, Every, Noise, Perturb, Resample, Tournament, Truncation, TTest
from .result import BestMember, Result, load
from .space import Choice, IntUniform, LogUniform, Uniform
from .trainable import Trainable

__version__ = "0.1.0"

__all__ = [
    "BestMember", "Choice", "CorruptCheckpoint", "Custom", "Every", "Experiment", "IntUniform", "LogUniform",
    "Noise", "Perturb", "PoptrainError", "Resample", "Result", "SpecError", "StorageError", "TTest", "Tournament",
    "Trainable", "Truncation", "Uniform", "load", "resume",
]
