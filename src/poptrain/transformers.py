"""Hugging Face Transformers: a `Trainer` with `PBTCallback` is a member of a stored population.

    args = TrainingArguments(..., eval_strategy="steps", eval_steps=50, max_steps=50 * STEPS)
    Trainer(model, args, ..., callbacks=[PBTCallback("sqlite:///pbt.db", "glue", monitor="eval_accuracy")]).train()

At train begin the callback asks for a member, loads its checkpoint (model, optimizer and
learning-rate scheduler: the schedule's position travels with the weights) if it has one, and
writes its hyperparameters: `learning_rate` (or `lr`) and `weight_decay` into the optimizer's
param groups and the scheduler's base rates, `warmup_steps` or `warmup_ratio` into the
scheduler's schedule, any other param-group key as it is. The param groups are written by
`poptrain.torch.apply_hparams`, as `TorchTrainable`'s are: a new rate keeps the schedule's
present factor, and weight decay skips the groups kept out of decay. One evaluation is one
interval: at each evaluation it tells the monitored metric; on an exploit it loads the source's
state and writes the new hyperparameters; when its member finishes it takes the next one that
is due, and stops training once none is left. The experiment exists beforehand
(`Experiment(trainable=None, ...).create()`); `max_steps` should cover steps × eval_steps.

A Trainer under `torchrun --nproc_per_node 2` is one member: the callback runs on every rank,
rank 0 alone talks to the store, and every rank gets the same member, hyperparameters, exploits
and stops. The Trainer gathers evaluation metrics from every rank, so each rank tells the same score.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import threading
from typing import Any, Callable, Mapping

try:
    import transformers
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError("poptrain.transformers needs Hugging Face Transformers: pip install 'poptrain[transformers]'") from exc

from .asktell.live import check_reduce
from .errors import PoptrainError
from .records import Decision
from .seat import Seat
from .torch.param_groups import apply_hparams, writable

log = logging.getLogger("poptrain")

WARMUP = ("warmup_steps", "warmup_ratio")


class PBTCallback(transformers.TrainerCallback):
    """Make this `Trainer` a member of the population `name` in `storage`, ranked by the evaluation metric `monitor`.

    `monitor` may be given with or without the `eval_` prefix the Trainer adds to metric names.
    On several processes the ranks are one member; `reduce` ("mean", "min", "max") tells that
    reduction of the ranks' metric instead of rank 0's (they agree for the Trainer's own metrics).
    `apply(hparams, model, optimizer)` sets whatever else the space holds (dropout, say). At
    train begin every hyperparameter must land in the optimizer, the warmup or `apply`: training
    is refused, in one line naming the others, before any member is taken. The Trainer has no
    hook for a `train()` that raises, so the callback watches the training thread: once it is no
    longer inside `Trainer.train` without having ended it, the member is given back (within a
    second or two, while a notebook's process lives on); `close()` does so at once.
    """

    def __init__(self, storage: str, name: str, monitor: str = "eval_loss", worker_id: str | None = None,
                 reduce: str | None = None, apply: Callable[[Mapping[str, Any], Any, Any], None] | None = None) -> None:
        check_reduce(reduce)
        self.storage, self.name, self.monitor, self.worker_id = storage, name, monitor, worker_id
        self.reduce, self.apply = reduce, apply
        self.seat: Seat | None = None
        self.decisions: list[Decision] = []  # what tell returned at each evaluation, for the curious
        self._model: Any = None
        self._optimizer: Any = None
        self._scheduler: Any = None
        self._ended = threading.Event()  # set when training ends normally: the watch on the training thread stops

    @property
    def member(self) -> Any:
        """The member this trainer trains now (None before training or once the population is done)."""
        return None if self.seat is None else self.seat.member

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       lr_scheduler: Any = None, **kwargs: Any) -> Any:
        """Ask for a member, load it, write its hyperparameters; stop at once if the population is done."""
        if str(getattr(args, "eval_strategy", getattr(args, "evaluation_strategy", "no"))).split(".")[-1].lower() == "no":
            raise PoptrainError("PBTCallback reports at each evaluation, and this Trainer never evaluates: "
                                "set eval_strategy='steps' (with eval_steps) in TrainingArguments")
        self._model, self._optimizer, self._scheduler = model, optimizer, lr_scheduler
        # under torchrun the process group exists by now, so the seat's connection makes the ranks one member
        self.seat = Seat(self.storage, self.name, self._read, self._write, self.worker_id, self.reduce,
                         lands=self._lands)
        member = self.seat.join()
        self._ended.clear()
        _watch_training(threading.get_ident(), self._ended, self.close)
        if member is None:
            control.should_training_stop = True
        elif args.eval_strategy == "steps" and state.max_steps < (member.steps - member.step) * args.eval_steps:
            log.warning("member %d needs %d more evaluations but max_steps=%d covers fewer: raise max_steps",
                        member.id, member.steps - member.step, state.max_steps)
        return control

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Mapping[str, Any] | None = None,
                    **kwargs: Any) -> Any:
        """Tell the monitored metric; exploits are applied in place; stop once the population is done."""
        if self.seat is None or self.seat.member is None:
            return control  # an evaluation outside training, or after the population is done
        metrics = metrics or {}
        key = self.monitor if self.monitor in metrics else f"eval_{self.monitor}"
        if key not in metrics:
            self.close()  # the member goes back now: the Trainer has no hook that runs after this error
            raise PoptrainError(f"PBTCallback monitors {self.monitor!r}, which this evaluation did not report: "
                                f"monitor one of {sorted(metrics)}")
        self.decisions.append(self.seat.tell(metrics[key]))
        if self.seat.member is None:
            control.should_training_stop = True
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._ended.set()
        if self.seat is not None:  # a member still held goes back; whoever asks next resumes its checkpoint
            self.seat.close()
        return control

    def close(self) -> None:
        """Give back the member this trainer holds (after training raised: its last checkpoint is where it resumes)."""
        if self.seat is not None:
            self.seat.leave()

    def _lands(self, names: list[str]) -> set[str]:
        """The hyperparameters this Trainer applies: param-group keys (`learning_rate` is `lr`), warmup, or all with
        `apply`."""
        if self._optimizer is None:
            raise PoptrainError("PBTCallback writes hyperparameters into the Trainer's optimizer, and it has none "
                                "at train begin: let the Trainer create one (or pass optimizers=)")
        if self.apply is not None:
            return set(names)
        as_field = {("lr" if n == "learning_rate" else n): n for n in names if n not in WARMUP}
        return {as_field[f] for f in writable(self._optimizer, as_field)} | {n for n in names if n in WARMUP}

    def _read(self) -> dict[str, Any]:
        """The member's state: model weights, optimizer state and the scheduler's position."""
        return {"model": self._model.state_dict(), "optimizer": self._optimizer.state_dict(),
                "scheduler": self._scheduler.state_dict()}

    def _write(self, state: Any, hparams: Mapping[str, Any]) -> None:
        if state is not None:
            self._model.load_state_dict(state["model"])
            self._optimizer.load_state_dict(state["optimizer"])
            self._scheduler.load_state_dict(state["scheduler"])
        scheduler = getattr(self._scheduler, "scheduler", self._scheduler)  # accelerate wraps it
        groups = {("lr" if k == "learning_rate" else k): v for k, v in hparams.items() if k not in WARMUP}
        apply_hparams(self._optimizer, groups, schedulers=[scheduler])
        if any(k in hparams for k in WARMUP):
            _rewarm(scheduler, self._optimizer, hparams)
        if self.apply is not None:
            self.apply(dict(hparams), self._model, self._optimizer)


def _watch_training(ident: int, ended: threading.Event, give_back: Callable[[], None]) -> None:
    """Give the member back if the thread `ident` leaves `Trainer.train` without ending it (an exception)."""
    train = transformers.Trainer.train.__code__

    def inside() -> bool:
        frame = sys._current_frames().get(ident)
        while frame is not None:
            if frame.f_code is train:
                return True
            frame = frame.f_back
        return False

    def watch() -> None:
        while not ended.wait(1.0):
            if not inside():
                log.warning("training ended without finishing (it raised): its member goes back to the population")
                give_back()
                return

    threading.Thread(target=watch, name="poptrain-training-watch", daemon=True).start()


def _rewarm(scheduler: Any, optimizer: Any, hparams: Mapping[str, Any]) -> None:
    """Give the schedule the member's warmup, and set the current rates to the new schedule's value now."""
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if not lambdas or not all(isinstance(f, functools.partial) and "num_warmup_steps" in f.keywords for f in lambdas):
        raise PoptrainError("the space has a warmup hyperparameter, but this Trainer's scheduler has no warmup "
                            "to change: use lr_scheduler_type 'linear', 'cosine' or another with warmup, or drop it")
    rebuilt = []
    for f in lambdas:
        total = f.keywords.get("num_training_steps")
        warmup = hparams["warmup_steps"] if "warmup_steps" in hparams else math.ceil(hparams["warmup_ratio"] * (total or 0))
        rebuilt.append(functools.partial(f.func, *f.args, **{**f.keywords, "num_warmup_steps": int(warmup)}))
    scheduler.lr_lambdas = rebuilt
    for group, base, f in zip(optimizer.param_groups, scheduler.base_lrs, rebuilt):
        group["lr"] = base * f(scheduler.last_epoch)
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]  # what the Trainer logs as the learning rate


__all__ = ["PBTCallback"]
