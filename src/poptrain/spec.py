"""The experiment's spec: trainable + space + policy + budget + storage, as plain, storable data."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from . import policy
from .errors import SpecError
from .redact import without_password
from .space import Domain, parse_space, sample_hparams, space_to_dict, validate_hparams
from .store import ONE_HOST, MemberRecord, default_checkpoints
from .trainable import object_path, resolve_trainable, searching

FIELDS = ("name", "trainable", "space", "metric", "mode", "population", "steps", "ready", "exploit", "explore",
          "storage", "seed", "initial", "synchronous", "checkpoints", "lease", "max_failures", "keep_checkpoints",
          "paths", "member_seeds", "schedule", "engine")


NAME = re.compile(r"[A-Za-z0-9_.-]+")
MAX_NAME = 100  # characters: a folder name every file system takes, with room for poptrain's own suffixes
DERIVED = re.compile(r"-(baseline|replay-\d+)$")  # the suffixes of the experiments poptrain names itself
MAX_POPULATION = 100_000
MAX_STEPS = 10_000_000
MAX_SEED = 2**63 - 1
MIN_LEASE, MAX_LEASE = 0.1, 7 * 24 * 3600.0
RESERVED = frozenset({"member", "step", "score", "time", "status", "failures"})  # Result's frame columns
log = logging.getLogger("poptrain")


def member_seed(seed: int, member: int) -> int:
    """The seed a member's trainable gets: distinct per member, fixed by the experiment's seed."""
    return int(np.random.SeedSequence([seed, member]).generate_state(1)[0] & 0x7FFFFFFF)


@dataclass
class ExperimentSpec:
    """What to train and how PBT decides, as validated plain data: what the store keeps and engines get.

    `steps` is each member's budget in intervals (calls of `train()`); `exploit=None` trains the
    same members with no exploit at all (the random-search baseline at equal compute). Running it
    is the runner's (`poptrain.Experiment` adds `run()`); nothing here starts anything.
    """

    name: str
    trainable: Any
    space: Mapping[str, Any]
    metric: str | None = None
    mode: str = "max"
    population: int = 8
    steps: int = 100
    ready: Any = field(default_factory=lambda: policy.Every(4))
    exploit: Any = field(default_factory=policy.Truncation)
    explore: Any = field(default_factory=policy.Perturb)
    storage: str = field(default="sqlite:///poptrain.db", repr=False)  # its password must not show in a repr
    seed: int = 0
    initial: list[dict[str, Any]] | None = None
    synchronous: bool = False
    checkpoints: str | None = None
    lease: float = 60.0
    max_failures: int = 3
    keep_checkpoints: int = 3
    paths: list[str] = field(default_factory=list)
    member_seeds: list[int] | None = None  # explicit seeds for the members' trainables (replay)
    schedule: list[dict[str, Any]] | None = None  # [{"step": s, "hparams": {...}}]: used from interval s+1 on
    engine: Any = None  # how `run()` trains by default (a name, {"type": name, options...} or an Engine); not stored

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME.fullmatch(self.name) or not self.name.strip("."):
            raise SpecError(f"experiment name {str(self.name)[:MAX_NAME]!r} must be letters, digits, '.', '_' or '-', "
                            f"and not only dots (it names checkpoint folders)")
        if len(DERIVED.sub("", self.name)) > MAX_NAME:
            raise SpecError(f"experiment name {self.name[:20]}... has {len(self.name)} characters: use at most "
                            f"{MAX_NAME} (it names checkpoint folders)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise SpecError(f"seed must be an integer from 0 to 2**63-1, not {self.seed!r}")
        for key in ("storage", "checkpoints"):
            value = getattr(self, key)
            if not isinstance(value, str) and not (key == "checkpoints" and value is None):
                raise SpecError(f"{key} must be a URL or path as a string, not {value!r}")
        if not isinstance(self.paths, list) or not all(isinstance(p, str) for p in self.paths):
            raise SpecError(f"paths must be a list of folder names (strings), not {self.paths!r}")
        if self.initial is not None and not isinstance(self.initial, list):
            raise SpecError(f"initial must be a list of hyperparameter tables, not {self.initial!r}")
        if not isinstance(self.synchronous, bool):
            raise SpecError(f"synchronous must be true or false, not {self.synchronous!r}")
        if self.metric is not None and not isinstance(self.metric, str):
            raise SpecError(f"metric must name a key of evaluate()'s dict, not {self.metric!r}")
        self.paths = [os.path.abspath(p) for p in self.paths]  # put on sys.path only where code is imported from them
        self.space: dict[str, Domain] = parse_space(self.space)
        clash = sorted(set(self.space) & RESERVED)
        if clash:
            raise SpecError(f"hyperparameter name(s) {', '.join(map(repr, clash))} are taken by poptrain's own "
                            f"columns ({', '.join(sorted(RESERVED))}): rename them")
        if self.mode not in ("max", "min"):
            raise SpecError(f"mode must be 'max' or 'min', not {self.mode!r}")
        limits = {"population": (1, MAX_POPULATION), "steps": (1, MAX_STEPS), "max_failures": (0, 1_000_000),
                  "keep_checkpoints": (1, 1_000_000)}
        for key, (low, high) in limits.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                what = "a non-negative" if low == 0 else "a positive"
                raise SpecError(f"{key} must be {what} integer, not {value!r}")
            if value > high:
                note = " (every member is held in memory and in the store: split a bigger search into experiments)" \
                    if key == "population" else ""
                raise SpecError(f"{key} is {value}, more than poptrain's limit of {high:_}{note}: use at most {high:_}")
        if isinstance(self.lease, bool) or not isinstance(self.lease, (int, float)) \
                or not MIN_LEASE <= self.lease <= MAX_LEASE:  # nan fails both comparisons
            raise SpecError(f"lease must be a number of seconds from {MIN_LEASE} to {MAX_LEASE:.0f} (a week), "
                            f"not {self.lease!r}")
        if self.synchronous and self.keep_checkpoints < 3:
            # a member may still copy a source's barrier checkpoint after that source checkpointed twice more
            raise SpecError(f"synchronous runs need keep_checkpoints >= 3, not {self.keep_checkpoints}")
        with searching(self.paths):  # a strategy given by import path ('module:fn') may live in the spec's folders
            self.ready = self._strategy("ready", policy.build_ready, self.ready)
            self.exploit = None if self.exploit in (None, "none") else \
                self._strategy("exploit", policy.build_exploit, self.exploit)
            self.explore = self._strategy("explore", policy.build_explore, self.explore)
        initial = list(self.initial or [])
        if len(initial) > self.population:
            raise SpecError(f"initial lists {len(initial)} members but population is {self.population}")
        # an entry may give only some hyperparameters: the others are sampled for that member
        self.initial = [validate_hparams(self.space, h, f"initial[{i}]", partial=True) for i, h in enumerate(initial)]
        if self.member_seeds is not None:
            if not isinstance(self.member_seeds, list) or len(self.member_seeds) != self.population or not all(
                    isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= MAX_SEED for x in self.member_seeds):
                raise SpecError(f"member_seeds must list {self.population} integers from 0 to 2**63-1, "
                                f"not {self.member_seeds!r}")
            self.member_seeds = [int(x) for x in self.member_seeds]
        if self.schedule is not None:
            self.schedule = self._checked_schedule(self.schedule)
        if self.trainable is not None:  # None: the members are trained by loops of the user's own (ask/tell)
            resolve_trainable(self.trainable, self.paths)
        if self.checkpoints is None or self.checkpoints == ONE_HOST:
            self.checkpoints = default_checkpoints(self.storage, self.name, one_host=self.checkpoints == ONE_HOST)

    def _checked_schedule(self, schedule: Any) -> list[dict[str, Any]]:
        """A schedule's entries sorted by step, starting at step 0, each a full set of hyperparameters."""
        if not isinstance(schedule, list) or not schedule:
            raise SpecError("schedule must be a non-empty list of {step, hparams} entries")
        checked = []
        for i, entry in enumerate(schedule):
            if not isinstance(entry, dict) or set(entry) != {"step", "hparams"}:
                raise SpecError(f"schedule[{i}] must have exactly the keys 'step' and 'hparams', not {entry!r}")
            step = entry["step"]
            if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < self.steps:
                raise SpecError(f"schedule[{i}].step must be an integer in [0, {self.steps}), not {step!r}")
            checked.append({"step": step, "hparams": validate_hparams(self.space, entry["hparams"], f"schedule[{i}]")})
        checked.sort(key=lambda e: e["step"])
        if checked[0]["step"] != 0:
            raise SpecError("schedule must start at step 0")
        return checked

    def scheduled(self, step: int) -> dict[str, Any] | None:
        """The hyperparameters the schedule gives for the interval after `step`, if there is one."""
        if not self.schedule:
            return None
        return [e for e in self.schedule if e["step"] <= step][-1]["hparams"]

    @property
    def policy(self) -> policy.Policy:
        """The decisions this spec asks for, as the one object every engine executes."""
        return policy.Policy.of(self)

    @staticmethod
    def _strategy(role: str, build: Any, value: Any) -> Any:
        if isinstance(value, str):
            value = {"type": value}
        return build(value)

    # plain data
    def to_spec(self) -> dict[str, Any]:
        """The experiment as JSON-able data: what the store keeps, so workers can join by URL (its storage without a password)."""
        trainable = self.trainable if isinstance(self.trainable, (str, type(None))) else object_path(self.trainable)
        return {
            "name": self.name, "trainable": trainable, "space": space_to_dict(self.space), "metric": self.metric,
            "mode": self.mode, "population": self.population, "steps": self.steps, "ready": self.ready.to_dict(),
            "exploit": None if self.exploit is None else self.exploit.to_dict(), "explore": self.explore.to_dict(),
            "storage": without_password(self.storage), "seed": self.seed, "initial": self.initial, "synchronous": self.synchronous,
            "checkpoints": self.checkpoints, "lease": self.lease, "max_failures": self.max_failures,
            "keep_checkpoints": self.keep_checkpoints, "paths": self.paths, "member_seeds": self.member_seeds,
            "schedule": self.schedule,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], **overrides: Any) -> "ExperimentSpec":
        """Build an experiment from plain data (a stored spec or a parsed TOML file)."""
        unknown = sorted(set(spec) - set(FIELDS))
        if unknown:
            raise SpecError(f"unknown field(s) in spec: {', '.join(unknown)} (known: {', '.join(FIELDS)})")
        data = {**spec, **{k: v for k, v in overrides.items() if v is not None}}
        data.setdefault("trainable", None)
        for required in ("name", "space"):
            if required not in data:
                raise SpecError(f"spec lacks the required field {required!r}")
        return cls(**data)

    def baseline(self) -> "ExperimentSpec":
        """The same members, steps and initial hyperparameters with no exploit: random search."""
        return dataclasses.replace(self, name=f"{self.name}-baseline", exploit=None)  # its keys name it: same place

    # running
    def initial_members(self) -> list[MemberRecord]:
        """The population at step 0: explicit `initial` hyperparameters first, the rest sampled."""
        rng = np.random.default_rng([self.seed, 0x5EED])
        members = []
        for i in range(self.population):
            hparams = sample_hparams(self.space, rng) if i >= len(self.initial) else self._completed(i)
            if self.schedule:
                hparams = self.schedule[0]["hparams"]
            seed = self.member_seeds[i] if self.member_seeds else member_seed(self.seed, i)
            members.append(MemberRecord(id=i, seed=seed, hparams=dict(hparams), initial_hparams=dict(hparams)))
        return members

    def _completed(self, i: int) -> dict[str, Any]:
        """initial[i] with the hyperparameters it leaves out drawn from their priors, by the member's own generator."""
        given = self.initial[i]
        if len(given) == len(self.space):
            return given
        drawn = sample_hparams(self.space, np.random.default_rng([self.seed, i, 0x5EED]))
        return {name: given[name] if name in given else drawn[name] for name in self.space}
