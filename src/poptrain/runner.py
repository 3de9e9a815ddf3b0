"""Running an experiment's spec: create it in the store, refuse a live run, hand the spec to an engine, resume.

Engines only ever receive the plain spec (`ExperimentSpec`); `poptrain.Experiment` adds the
verbs that call these functions.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from .engines import Engine, make_engine, trained_batched
from .heartbeat import Heartbeat
from .speccode import check_stored_code
from .errors import PoptrainError, SpecError
from .redact import shown
from .spec import ExperimentSpec
from .store import CheckpointStore, Store, open_store
from .store.checkpoints import refuse_pickled

if TYPE_CHECKING:
    from .result import Result

log = logging.getLogger("poptrain")


def create(spec: ExperimentSpec, wait: bool = False) -> bool:
    """Store `spec` unless an experiment of its name is there; True if created, False if it was stored."""
    store = open_store(spec.storage, wait=wait)
    CheckpointStore(spec.checkpoints).check_writable()  # a folder workers cannot write fails before the spec is stored
    if spec.name in store.experiments():
        check_stored(store, spec)
        refuse_pickled(store, spec.name, spec.checkpoints)  # one error, not every member failing on its checkpoint
        return False
    data = spec.to_spec()
    if (data["trainable"] or "").startswith("__main__:"):
        log.warning("trainable %s lives in the script or notebook that runs it: `poptrain worker` and `poptrain "
                    "resume` in another process cannot import it; move it into a module to let workers join by URL",
                    data["trainable"])
    try:
        store.create_experiment(spec.name, data, spec.initial_members())
    except Exception:
        if spec.name not in store.experiments():
            raise
        check_stored(store, spec)  # another worker created it a moment earlier
        return False
    return True


def check_stored(store: Store, spec: ExperimentSpec) -> None:
    """Refuse to continue a stored experiment of the same name whose spec differs from this one."""
    stored, mine = store.get_spec(spec.name), json.loads(json.dumps(spec.to_spec()))
    for spec_data in (stored, mine):  # the store it is in is this one, whatever URL reached it (password or none)
        spec_data.pop("storage", None)
    if stored != mine:
        changed = sorted(k for k in set(stored) | set(mine) if stored.get(k) != mine.get(k))
        raise SpecError(
            f"experiment {spec.name!r} already exists in {shown(spec.storage)} with a different spec "
            f"({', '.join(changed)} differ): choose another name, or `poptrain resume` it")


def check_not_running(storage: str, name: str, force: bool) -> None:
    """Refuse to start workers on an experiment that live workers hold, unless forced."""
    store = open_store(storage)
    now = store.clock()  # leases end on the store's clock, not this host's
    live = [m for m in store.members(name) if m.status == "active" and m.worker and m.lease_until > now]
    if not live:
        return
    if force:
        store.release_all(name)
        return
    holders = ", ".join(sorted({m.worker for m in live if m.worker}))
    wait = max(m.lease_until for m in live) - now
    raise PoptrainError(
        f"experiment {name!r} is being trained: {len(live)} member(s) are leased by {holders}. "
        f"Join it with `poptrain worker --storage {shown(storage)} --experiment {name}`; if those workers are dead, "
        f"wait {wait:.0f} s for their leases to expire or resume with --force")


def choose_engine(spec: ExperimentSpec, store: Store, engine: Any, options: dict[str, Any]) -> Engine:
    """The engine a run uses: the one asked for, else the spec's, else the one that wrote its checkpoints."""
    chosen = engine if engine is not None else spec.engine
    if chosen is None:
        stored = spec.name in store.experiments()
        chosen = "vectorized" if stored and trained_batched(store, spec.name) else "local"
    return make_engine(chosen, options)


def run(spec: ExperimentSpec, engine: Any = None, *, progress: bool = False, force: bool = False,
        **options: Any) -> "Result":
    """Train a spec's population to its budget on an engine; see `Experiment.run`."""
    from .result import Result

    if spec.trainable is None:
        raise SpecError(f"experiment {spec.name!r} has no trainable: its members are trained by loops of your own "
                        f"(poptrain.connect(storage, name), then ask/tell); give it a trainable to run it on an engine")
    store = open_store(spec.storage)
    chosen = choose_engine(spec, store, engine, options)  # a bad engine is refused before anything is stored
    created = create(spec)
    runner = f"run-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    holder = store.hold_run(spec.name, runner, spec.lease, time.time(), force)  # atomic: one run of two wins
    if holder is not None:
        raise PoptrainError(
            f"experiment {spec.name!r} is being trained by another run ({holder}). Join it with `poptrain worker "
            f"--storage {shown(spec.storage)} --experiment {spec.name}`; if that run is dead, wait {spec.lease:g} s for its "
            f"hold to expire or resume with --force")
    try:
        if not created:
            check_not_running(spec.storage, spec.name, force)
        trainable = None if isinstance(spec.trainable, str) else spec.trainable
        renew = lambda now: store.hold_run(spec.name, runner, spec.lease, now)  # noqa: E731
        with Heartbeat(store, spec.name, runner, spec.lease, renew):
            chosen.run(store, spec, trainable=trainable, progress=progress)
    finally:
        store.release_run(spec.name, runner)
    return Result(store, spec.name)


def resume(storage: str, name: str, engine: Any = None, *, progress: bool = False, force: bool = False,
           trust_spec_code: bool = False, **options: Any) -> "Result":
    """Finish a stored experiment that was interrupted; members restart from their checkpoints.

    Code its stored spec names beyond the trainable's module is imported only with `trust_spec_code`.
    """
    spec = open_store(storage, create=False).get_spec(name)  # its storage has no password: `storage` is used
    check_stored_code(spec, name, trust_spec_code)
    return run(ExperimentSpec.from_spec(spec, storage=storage), engine, progress=progress, force=force, **options)
