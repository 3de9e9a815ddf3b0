"""The code a stored spec names, and whether a process that joins by URL may import it.

A spec names code by import path ('module:Name'): its trainable, and any strategy of the
user's own (`type = "mymodule:MyExploit"`) or explore function (`path = "mymodule:fn"`). A process
that builds the spec itself (a script, a notebook, `poptrain run SPEC.toml`) imports what it
wrote. A process that reads the spec from a store (`poptrain.connect`, `poptrain worker`,
`poptrain resume`) imports the trainable's own module and poptrain's, and anything else only
if its user trusts the store: `trust_spec_code=True`, `POPTRAIN_TRUST_SPEC=1`, or
`POPTRAIN_TRUST_MODULES=pkg1,pkg2` (module prefixes). It logs each import path before it is
imported. This stops someone who can write the store from making every worker run the
top-level code of a module beyond the trainable's; it does not stop them from renaming the
trainable itself, or pointing `paths` at a folder whose module shadows it: a shared store must
be writable only by people you would let name your trainable.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterator, Mapping

from .errors import SpecError
from .policy.registry import IMPORT_PATH  # the one shape of 'module:Name' a spec may name

log = logging.getLogger("poptrain")

TRUST_ENV, MODULES_ENV = "POPTRAIN_TRUST_SPEC", "POPTRAIN_TRUST_MODULES"
STRATEGIES = ("ready", "exploit", "explore")


def named_code(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every import path the spec names, with what it is for: (role, 'module:Name'), the trainable first."""
    found = [("trainable", spec["trainable"])] if isinstance(spec.get("trainable"), str) else []
    for role in STRATEGIES:
        found.extend((role, path) for path in _paths_in(spec.get(role)))
    return found


def _paths_in(value: Any) -> Iterator[str]:
    """Import paths anywhere in a strategy's table (its type, a function's path, a nested strategy's)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and IMPORT_PATH.fullmatch(item):
            yield item
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def trusted(module: str, trust: bool) -> bool:
    """Whether code from `module` may be imported beyond the trainable's: by opt-in, or by an allowed prefix."""
    if trust or os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes"):
        return True
    prefixes = [p.strip() for p in os.environ.get(MODULES_ENV, "").split(",") if p.strip()]
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def check_stored_code(spec: Mapping[str, Any], name: str, trust: bool = False) -> None:
    """Before a stored spec is built: log what it will import, and refuse code beyond the trainable's module
    that the user has not trusted (one line naming it and the opt-ins)."""
    code = named_code(spec)
    own = {path.partition(":")[0] for role, path in code if role == "trainable"}
    refused = []
    for role, path in code:
        module = path.partition(":")[0]
        if module == "poptrain" or module.startswith("poptrain."):
            continue  # the library's own strategies and functions
        if module in own or trusted(module, trust):
            log.info("experiment %r: importing %s (its %s), as its stored spec names", name, path, role)
        else:
            refused.append(f"{path} ({role})")
    if refused:
        modules = ",".join(sorted({r.partition(":")[0] for r in refused}))
        raise SpecError(f"experiment {name!r} in this store names code beyond its trainable's module: "
                        f"{', '.join(refused)}; poptrain imports it only if you trust whoever wrote the store: "
                        f"set {MODULES_ENV}={modules} (or {TRUST_ENV}=1), or pass trust_spec_code=True")
