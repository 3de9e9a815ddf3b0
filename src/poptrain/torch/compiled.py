"""torch.compile for a batched population, falling back to eager when compiling fails.

Compiling needs a working backend (on the CPU, a C++ compiler) and code that dynamo can trace
whole. Where it cannot, training must go on all the same: the first failure logs one warning
and every function of that population runs eagerly from then on.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch

log = logging.getLogger("poptrain")
BACKEND = "inductor"  # a test swaps in a failing backend


class Compiler:
    """Compiles one population's functions; the first failure turns all of them back to eager."""

    def __init__(self, mode: str | None = None, backend: str | None = None) -> None:
        self.failed = False
        self.mode, self.backend = mode, backend  # torch.compile's; None: its default mode, and BACKEND

    def __call__(self, fn: Callable[..., Any], what: str) -> Callable[..., Any]:
        """`fn` compiled as one whole graph per input shape, or `fn` itself once compiling has failed."""
        try:
            backend = self.backend or BACKEND
            mode = self.mode if backend == "inductor" else None  # modes are inductor's
            compiled = torch.compile(fn, backend=backend, mode=mode, fullgraph=True, dynamic=False)
        except RuntimeError as exc:  # this Python or platform has no torch.compile
            self._fail(what, exc)
            return fn

        def call(*args: Any, **kwargs: Any) -> Any:
            if not self.failed:
                try:
                    return compiled(*args, **kwargs)
                except torch._dynamo.exc.TorchDynamoException as exc:
                    # fullgraph: compiling fails before the graph runs, so no state was half-updated
                    self._fail(what, exc)
            return fn(*args, **kwargs)

        return call

    def _fail(self, what: str, exc: BaseException) -> None:
        if not self.failed:
            cause = getattr(exc, "inner_exception", None) or exc  # what the backend raised, e.g. no C++ compiler
            reason = (str(cause).strip().splitlines() or [""])[0][:300]
            log.warning("torch.compile failed on the %s (%s: %s); training continues eagerly", what,
                        type(cause).__name__, reason)
        self.failed = True
