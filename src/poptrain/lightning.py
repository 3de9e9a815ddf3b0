"""PyTorch Lightning: a `Trainer` with `PBTCallback` is a member of a stored population.

    trainer = lightning.Trainer(callbacks=[PBTCallback("sqlite:///pbt.db", "mnist", monitor="val_acc")])
    trainer.fit(model, train_loader, val_loader)   # in each of N processes: they form one population

At fit start the callback asks for a member, loads its checkpoint (module, optimisers,
schedulers) if it has one, and writes its hyperparameters into the optimisers' param groups and
into the module attributes named by `hparam_attributes`. The param groups are written by
`poptrain.torch.apply_hparams`, as `TorchTrainable`'s are: any key every group has (`lr`,
`weight_decay`, `momentum`; `beta1`/`beta2` into `betas`), a new `lr` keeping the scheduler's
present factor, and weight decay skipping the groups kept out of decay. One validation is one
interval: at each validation end it tells the monitored metric; on an exploit it loads the
source's state and writes the new hyperparameters; when its member finishes it takes the next
one that is due, and stops the trainer once none is left. The experiment exists beforehand
(`Experiment(trainable=None, ...).create()`).

A Trainer with several devices (`Trainer(strategy="ddp", devices=2, callbacks=[pbt])`) is one
member: the callback runs on every rank, rank 0 alone talks to the store, and every rank gets
the same member, hyperparameters, exploits and stops. The score told is rank 0's monitored
metric: log it with `sync_dist=True` so every rank holds the same value, or pass `reduce`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

try:
    import lightning.pytorch as pl
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError("poptrain.lightning needs PyTorch Lightning: pip install 'poptrain[lightning]'") from exc

from .asktell.live import check_reduce
from lightning.pytorch.core.optimizer import _MockOptimizer

from .errors import PoptrainError
from .records import Decision
from .seat import Seat, attribute_parent, write_attributes
from .torch.param_groups import apply_hparams, writable


class PBTCallback(pl.Callback):
    """Make this `Trainer` a member of the population `name` in `storage`, ranked by the logged metric `monitor`.

    `hparam_attributes` maps hyperparameters to module attributes (dotted paths, e.g.
    `{"dropout": "dropout.p"}`); hyperparameters named like param-group keys go to the optimisers.
    The trainer's `max_epochs` is set from the experiment's budget when it validates once per epoch.
    On several devices the ranks are one member; `reduce` ("mean", "min", "max") tells that
    reduction of the ranks' metric instead of rank 0's. `apply(hparams, module, trainer)` sets
    whatever else the space holds (a batch size, an augmentation strength). At fit start every
    hyperparameter must land in an optimiser, an attribute or `apply`: the fit is refused, in one
    line naming the others, before any member is taken.
    """

    def __init__(self, storage: str, name: str, monitor: str, hparam_attributes: Mapping[str, str] | None = None,
                 worker_id: str | None = None, reduce: str | None = None,
                 apply: Callable[[Mapping[str, Any], pl.LightningModule, pl.Trainer], None] | None = None) -> None:
        check_reduce(reduce)
        self.storage, self.name, self.monitor = storage, name, monitor
        self.hparam_attributes = dict(hparam_attributes or {})
        self.apply = apply
        self.worker_id, self.reduce = worker_id, reduce
        self.seat: Seat | None = None
        self.decisions: list[Decision] = []  # what tell returned at each validation, for the curious

    @property
    def member(self) -> Any:
        """The member this trainer trains now (None before fit or once the population is done)."""
        return None if self.seat is None else self.seat.member

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Ask for a member and load it; stop at once if the population is done (on every rank alike)."""
        # under DDP the process group exists by now, so the seat's connection makes the ranks one member
        self.seat = Seat(self.storage, self.name, lambda: _read(trainer, pl_module),
                         lambda state, hparams: self._write(trainer, pl_module, state, hparams), self.worker_id,
                         self.reduce, lands=lambda names: self._lands(trainer, pl_module, names))
        self._budget(trainer, self.seat.join(), first=True)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Tell the monitored metric; exploits are applied in place; a finished member makes room for the next."""
        if trainer.sanity_checking or self.seat is None or self.seat.member is None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise PoptrainError(f"PBTCallback monitors {self.monitor!r}, which this validation did not log: "
                                f"call self.log({self.monitor!r}, ...) in validation_step or monitor one of "
                                f"{sorted(trainer.callback_metrics)}")
        before = self.seat.member
        self.decisions.append(self.seat.tell(value))
        if self.seat.member is not before:
            self._budget(trainer, self.seat.member, first=False)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.seat is not None:
            self.seat.close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self.seat is not None:  # give the member back: another process resumes it from its checkpoint
            self.seat.leave()

    def _budget(self, trainer: pl.Trainer, member: Any, first: bool) -> None:
        """Stop when the population is done; else let the fit run the member's remaining validations."""
        # Lightning does not reduce should_stop across ranks: it agrees because every rank gets the same member
        if member is None:
            trainer.should_stop = True
            return
        trainer.should_stop = False
        if trainer.val_check_interval == 1.0:  # one validation per check_val_every_n_epoch epochs
            epochs = (member.steps - member.step) * (trainer.check_val_every_n_epoch or 1)
            # a member taken over at a validation end starts counting at the next epoch
            trainer.fit_loop.max_epochs = trainer.current_epoch + epochs + (0 if first else 1)

    def _lands(self, trainer: pl.Trainer, module: pl.LightningModule, names: list[str]) -> set[str]:
        """The hyperparameters this fit applies: optimiser fields, mapped attributes (checked), or all with `apply`."""
        if not [o for o in trainer.optimizers if not isinstance(o, _MockOptimizer)]:  # None from configure_optimizers
            raise PoptrainError("PBTCallback writes hyperparameters into the module's optimisers, and this module "
                                "configures none: return one from configure_optimizers")
        for hparam, path in self.hparam_attributes.items():
            attribute_parent(module, hparam, path)  # a missing part of the path is one clear error, before training
        if self.apply is not None:
            return set(names)
        return {n for o in trainer.optimizers for n in writable(o, names)} | set(self.hparam_attributes)

    def _write(self, trainer: pl.Trainer, module: pl.LightningModule, state: Any, hparams: Mapping[str, Any]) -> None:
        if state is not None:
            module.load_state_dict(state["module"])
            for optimizer, saved in zip(trainer.optimizers, state["optimizers"]):
                optimizer.load_state_dict(saved)
            for config, saved in zip(trainer.lr_scheduler_configs, state["schedulers"]):
                config.scheduler.load_state_dict(saved)
        schedulers = [c.scheduler for c in trainer.lr_scheduler_configs]
        for optimizer in trainer.optimizers:  # each takes the hyperparameters its groups have; the rest are the module's
            apply_hparams(optimizer, hparams, schedulers=schedulers)
        write_attributes(module, self.hparam_attributes, hparams)
        if self.apply is not None:
            self.apply(dict(hparams), module, trainer)


def _read(trainer: pl.Trainer, module: pl.LightningModule) -> dict[str, Any]:
    """The member's state: the module's weights, the optimisers' and the schedulers' states."""
    return {"module": module.state_dict(),
            "optimizers": [o.state_dict() for o in trainer.optimizers],
            "schedulers": [c.scheduler.state_dict() for c in trainer.lr_scheduler_configs]}


__all__ = ["PBTCallback"]
