"""MLflow: one parent run for the experiment, one child run per member, through MlflowClient.

MLflow params cannot change once logged, so a member's hyperparameters are logged as metrics by step
(`hparam.<name>`), and its current ones as tags (`hparam.<name>`), rewritten at each exploit; its
starting ones are params (`initial.<name>`). Each exploit is a metric `exploit_source` at its step, a
tag `exploit.<step>`, and a row of the run's `exploits.json` artifact.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from typing import Any, Iterator

from ..errors import PoptrainError, SpecError, StorageError
from ..store import Event, Report
from .names import exploit_line, number, writable_folder

BATCH = 1000  # MLflow takes at most 1000 metrics per log_batch


def metric_key(text: str) -> str:
    """A metric or tag name MLflow accepts (letters, digits, _ - . / and spaces)."""
    return re.sub(r"[^\w.\- /]", "_", text) or "_"


@contextmanager
def _file_store_allowed() -> Iterator[None]:
    """MLflow 3 refuses a folder as tracking store unless asked; naming a folder is the asking."""
    before = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        if before is None:
            del os.environ["MLFLOW_ALLOW_FILE_STORE"]
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = before


def tracking_uri(target: str) -> tuple[str, bool]:
    """The tracking URI for a folder or URI, and whether it is a folder (MLflow's file store)."""
    if "://" not in target or target.startswith("file:"):
        path = target[len("file://"):] if target.startswith("file://") else target.removeprefix("file:")
        return writable_folder(path, "MLflow runs"), True
    return target, False


class MlflowSink:
    """Logs an experiment as a parent run and a child run per member to a tracking URI or folder."""

    def __init__(self, target: str, name: str, spec: dict[str, Any]) -> None:
        try:
            from mlflow.exceptions import MlflowException
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise SpecError("--to mlflow needs the mlflow-skinny package: pip install 'poptrain[loggers]'") from None
        uri, folder = tracking_uri(target)
        try:
            if folder:
                with _file_store_allowed():
                    self.client = MlflowClient(tracking_uri=uri)
                    self.client._tracking_client.store  # the store is built (and cached) while allowed
            else:
                self.client = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(name)
            self.experiment = found.experiment_id if found else self.client.create_experiment(name)
            self.parent = self.client.create_run(self.experiment, run_name=name,
                                                 tags={"poptrain.experiment": name}).info.run_id
            params = {k: spec.get(k) for k in ("population", "steps", "metric", "mode", "seed", "synchronous")}
            self.client.log_batch(self.parent, params=[_param(k, v) for k, v in params.items() if v is not None])
        except ModuleNotFoundError as exc:  # a database tracking URI needs MLflow's migrations (alembic, in the extra)
            raise SpecError(f"logging to MLflow at {target} needs the {exc.name} package: pip install "
                            f"'poptrain[loggers]'") from None
        except (MlflowException, OSError) as exc:  # an unknown scheme, an unreachable server, a full disk
            raise StorageError(f"cannot log to MLflow at {target}: {_first_line(exc)}") from None
        self.name = name
        self.runs: dict[int, str] = {}
        self.exploits: dict[int, list[dict[str, Any]]] = {}

    def _run(self, member: int, hparams: dict[str, Any]) -> str:
        if member not in self.runs:
            run = self.client.create_run(self.experiment, run_name=f"member-{member}",
                                         tags={"mlflow.parentRunId": self.parent, "poptrain.member": str(member)})
            self.runs[member] = run.info.run_id
            self.client.log_batch(run.info.run_id, params=[_param(f"initial.{k}", v) for k, v in hparams.items()])
        return self.runs[member]

    def write(self, reports: list[Report], events: list[Event]) -> None:
        """Log each report's score, metrics and hyperparameters at its step, and each exploit."""
        from mlflow.entities import Metric, RunTag

        metrics: dict[str, list[Any]] = {}
        tags: dict[str, dict[str, str]] = {}
        for r in reports:
            run = self._run(r.member, r.hparams)
            ms = metrics.setdefault(run, [])
            ms.extend(Metric(metric_key(key), x, int(r.time * 1000), r.step)
                      for key, value in [("score", r.score), *((f"metric.{k}", v) for k, v in r.metrics.items()),
                                         *((f"hparam.{k}", v) for k, v in r.hparams.items())]
                      if (x := number(value)) is not None)
            tags.setdefault(run, {}).update({metric_key(f"hparam.{k}"): str(v) for k, v in r.hparams.items()})
        for e in events:
            run = self._run(e.member, e.old_hparams)
            metrics.setdefault(run, []).append(Metric("exploit_source", float(e.source), int(e.time * 1000), e.step))
            line = exploit_line(e.source, e.source_step, e.old_hparams, e.new_hparams)
            tags.setdefault(run, {})[f"exploit.{e.step}"] = line
            self.exploits.setdefault(e.member, []).append(
                {"step": e.step, "source": e.source, "source_step": e.source_step, "old_hparams": e.old_hparams,
                 "new_hparams": e.new_hparams, "time": e.time})
        for run, ms in metrics.items():
            for i in range(0, len(ms), BATCH):
                self.client.log_batch(run, metrics=ms[i:i + BATCH])
        for run, ts in tags.items():
            self.client.log_batch(run, tags=[RunTag(k, v) for k, v in ts.items()])
        for member in {e.member for e in events}:  # the whole table again: an artifact is rewritten, not appended
            self.client.log_dict(self.runs[member], self.exploits[member], "exploits.json")

    def close(self) -> None:
        """End the member runs and the parent run."""
        for run in self.runs.values():
            self.client.set_terminated(run)
        self.client.set_terminated(self.parent)


def _param(key: str, value: Any) -> Any:
    from mlflow.entities import Param

    return Param(metric_key(key), str(value))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
