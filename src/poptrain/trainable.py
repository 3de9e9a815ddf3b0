"""The user's model: the protocol every engine drives, and how an import path becomes a class."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

from .errors import SpecError
from .records import Hparams


class Trainable:
    """A member's model. Subclass it (or match its methods) and poptrain trains a population.

    `train()` runs one interval (the paper's *step*) with the current hyperparameters;
    `evaluate()` returns the objective (a float, or a dict holding the experiment's metric).
    After an exploit poptrain calls `load_state_dict(source_state)` and only then
    `set_hparams(new_hparams)`, so the explored values win over the ones inside the state.
    """

    def __init__(self, hparams: Hparams, seed: int) -> None:
        self.hparams = dict(hparams)
        self.seed = seed

    def train(self) -> None:
        raise NotImplementedError

    def evaluate(self) -> float | dict[str, float]:
        raise NotImplementedError

    def set_hparams(self, hparams: Hparams) -> None:
        self.hparams = dict(hparams)

    def state_dict(self) -> Any:
        raise NotImplementedError

    def load_state_dict(self, state: Any) -> None:
        raise NotImplementedError


REQUIRED = ("train", "evaluate", "set_hparams", "state_dict", "load_state_dict")
# the spec's `paths` while it builds what it names by import path (a function strategy): see `searching`
_SPEC_PATHS: ContextVar[tuple[str, ...]] = ContextVar("poptrain_spec_paths", default=())


@contextmanager
def searching(paths: list[str] | tuple[str, ...]) -> Iterator[None]:
    """Let every `import_object` inside search `paths` too (a spec's strategies import from its folders)."""
    token = _SPEC_PATHS.set(tuple(paths))
    try:
        yield
    finally:
        _SPEC_PATHS.reset(token)


def import_object(path: str, search_paths: list[str] | tuple[str, ...] = ()) -> Any:
    """Import 'package.module:attr' (searching `search_paths` first); errors name the path.

    The one place poptrain puts a spec's folders on sys.path: once each, when it imports from them.
    """
    if not isinstance(path, str) or ":" not in path:
        raise SpecError(f"import path {path!r} must look like 'package.module:Name'")
    module_name, _, attr = path.partition(":")
    for p in reversed([*search_paths, *_SPEC_PATHS.get()]):
        if p not in sys.path:
            sys.path.insert(0, p)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"cannot import module {module_name!r} of {path!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            if module_name == "__main__":  # a class from the notebook or script that created the experiment
                raise SpecError(f"trainable {path} was defined in the script or notebook that started the experiment, "
                                f"which this process cannot import: move it into a module (and name it "
                                f"'module:{attr}'), or continue the run from that script or notebook") from None
            raise SpecError(f"module {module_name!r} has no attribute {attr!r} (from {path!r})"
                            f"{_shadowed(module, module_name, search_paths)}") from None
    return obj


def _shadowed(module: Any, module_name: str, search_paths: list[str] | tuple[str, ...]) -> str:
    """A note when this process imported another file under the same module name before the spec's folder held it."""
    loaded = os.path.abspath(getattr(module, "__file__", None) or "")
    relative = module_name.replace(".", os.sep)
    for folder in search_paths:
        for candidate in (os.path.join(folder, relative + ".py"), os.path.join(folder, relative, "__init__.py")):
            if os.path.exists(candidate) and os.path.abspath(candidate) != loaded:
                return (f"; this process had already imported {loaded} under the name {module_name!r}, not "
                        f"{candidate}: rename one of the two modules")
    return ""


def object_path(obj: Any) -> str:
    """The 'module:qualname' import path of a class or function."""
    return f"{obj.__module__}:{obj.__qualname__}"


def resolve_trainable(trainable: Any, search_paths: list[str] | tuple[str, ...] = ()) -> Any:
    """Return the trainable from a class, a function or an import path, checking it has the protocol.

    A class follows the `Trainable` protocol; a plain function is a whole training loop,
    `fn(member)`, that trains one member handed to it (see `is_function_trainable`).
    """
    cls = import_object(trainable, search_paths) if isinstance(trainable, str) else trainable
    if is_function_trainable(cls):
        return cls
    missing = [name for name in REQUIRED if not callable(getattr(cls, name, None))]
    if not isinstance(cls, type) or missing:
        name = trainable if isinstance(trainable, str) else repr(trainable)
        raise SpecError(
            f"trainable {name} is neither a Trainable class nor a function fn(member)"
            + (f": it lacks {', '.join(missing)}" if missing and isinstance(cls, type) else "")
        )
    return cls


def is_function_trainable(obj: Any) -> bool:
    """Whether `obj` is a training loop written as a plain function `fn(member)` rather than a class."""
    return inspect.isfunction(obj)
