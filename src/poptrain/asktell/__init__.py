"""Ask/tell: a training loop the user owns, joined to a stored population.

    pop = poptrain.connect("sqlite:///runs/x.db", "x")
    while (member := pop.ask()) is not None:          # a member that is due, leased to this process
        model = build(member.hparams, member.seed)
        if member.state is not None:
            model.load_state_dict(member.state)
        while member.running:
            train_one_interval(model, member.hparams)
            decision = pop.tell(member, evaluate(model), state=model.state_dict)
            if isinstance(decision, poptrain.Exploit):  # copy the source, train on with new hyperparameters
                model.load_state_dict(decision.state)

This is the one code path: the engines' worker loop is a client of it, and a batched model
holding the whole population tells through `LiveBatch`, which takes the same per-interval step
(`step.next_move`) for every member at once. `tell` applies the policy, leases, checkpoints and
fault rules the engines do; `state` may be a callable, so it is serialised only when a
checkpoint is due. A process that dies loses its lease, and its member is taken over from its
last checkpoint by whoever asks next.
"""

from __future__ import annotations

from .batch import LiveBatch
from .group import GroupConnection
from .join import connect
from .live import Connection, Member

__all__ = ["LiveBatch", "Connection", "GroupConnection", "Member", "connect"]
