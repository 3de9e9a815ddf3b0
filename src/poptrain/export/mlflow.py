"""MLflow: one parent run for the experiment, one child run per member, through MlflowClient.

MLflow params cannot change once logged, so a member's hyperparameters are logged as metrics by step
(`hparam.<name>`), and its current ones as tags (`hparam.<name>`), rewritten at each exploit; its
starting ones are params (`initial.<name>`). Each exploit is a metric `exploit_source` at its step, a
tag `exploit.<step>`, and a row of the run's `exploits.json` artifact. A name MLflow refuses, or one
that cleans to a name already logged, is logged under a unique clean name; the run's `renamed.json`
artifact maps each such name back to the name reported.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from typing import Any, Iterator

from ..errors import PoptrainError, SpecError, StorageError
from ..store import Event, Report
from ..redact import masked
from .names import UniqueNames, exploit_line, mlflow_name, number, writable_folder

BATCH, PER_BATCH = 1000, 100  # MLflow takes at most 1000 metrics, and 100 params or tags, per log_batch
KEY_LIMIT = 250 - len("initial.")  # MLflow's longest key, less the longest prefix poptrain puts before a name
PARAM_LIMIT, TAG_LIMIT = 6000, 8000  # MLflow's longest param and tag values
# a tracking server that does not answer fails in about 20 s, not MLflow's 4 minutes (7 retries, 120 s timeout)
QUICK_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


@contextmanager
def _environment(values: dict[str, str], override: bool = True) -> Iterator[None]:
    """These environment variables set for the block (without `override`, only those not set already)."""
    before = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if override or before[k] is None:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _file_store_allowed() -> Any:
    """MLflow 3 refuses a folder as tracking store unless asked; naming a folder is the asking."""
    return _environment({"MLFLOW_ALLOW_FILE_STORE": "true"})


def _quick_http() -> Any:
    """MLflow's HTTP retries and timeout cut short, unless the user set them."""
    return _environment(QUICK_HTTP, override=False)


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
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise SpecError("--to mlflow needs the mlflow-skinny package: pip install 'poptrain[loggers]'") from None
        uri, folder = tracking_uri(target)
        self.target, self.name = target, name
        self.parent: str | None = None
        try:
            with self._calls(), _quick_http():  # the first contact: a server that does not answer fails fast
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
        except PoptrainError:
            self.close(failed=True)
            raise
        self.runs: dict[int, str] = {}
        self.exploits: dict[int, list[dict[str, Any]]] = {}
        self.metric_names, self.hparam_names = UniqueNames(mlflow_name, KEY_LIMIT), UniqueNames(mlflow_name, KEY_LIMIT)
        self.renamed: dict[str, dict[str, str]] = {}  # per run: logged key -> reported name, as in its renamed.json

    @contextmanager
    def _calls(self) -> Iterator[None]:
        """MLflow's errors as one line naming the target (its password masked) and what to do."""
        from mlflow.exceptions import MlflowException
        from sqlalchemy.exc import SQLAlchemyError

        try:
            yield
        except ModuleNotFoundError as exc:  # a database tracking URI needs MLflow's migrations (alembic, in the extra)
            raise SpecError(f"logging to MLflow at {masked(self.target, self.target)} needs the {exc.name} package: "
                            f"pip install 'poptrain[loggers]'") from None
        except (MlflowException, OSError, SQLAlchemyError) as exc:  # a bad scheme, no server, not a database, no room
            raise StorageError(masked(f"cannot log to MLflow at {self.target}: {_reason(exc)}", self.target)) from None

    def _key(self, prefix: str, names: UniqueNames, original: str, run: str) -> str:
        """`prefix` + the logged name of `original`, noted in the run's renamed table if it differs."""
        name = names(original)
        if name != original:
            self.renamed.setdefault(run, {})[prefix + name] = original
        return prefix + name

    def _run(self, member: int, hparams: dict[str, Any]) -> str:
        if member not in self.runs:
            assert self.parent is not None
            run = self.client.create_run(self.experiment, run_name=f"member-{member}",
                                         tags={"mlflow.parentRunId": self.parent, "poptrain.member": str(member)})
            self.runs[member] = run_id = run.info.run_id
            params = [_param(self._key("initial.", self.hparam_names, k, run_id), v) for k, v in hparams.items()]
            for i in range(0, len(params), PER_BATCH):
                self.client.log_batch(run_id, params=params[i:i + PER_BATCH])
        return self.runs[member]

    def write(self, reports: list[Report], events: list[Event]) -> None:
        """Log each report's score, metrics and hyperparameters at its step, and each exploit."""
        with self._calls():
            self._write(reports, events)

    def _write(self, reports: list[Report], events: list[Event]) -> None:
        from mlflow.entities import Metric, RunTag

        renamed_before = {run: len(table) for run, table in self.renamed.items()}
        metrics: dict[str, list[Any]] = {}
        tags: dict[str, dict[str, str]] = {}
        for r in reports:
            run = self._run(r.member, r.hparams)
            named = [("score", r.score), *((self._key("metric.", self.metric_names, k, run), v)
                                           for k, v in r.metrics.items()),
                     *((self._key("hparam.", self.hparam_names, k, run), v) for k, v in r.hparams.items())]
            metrics.setdefault(run, []).extend(Metric(key, x, int(r.time * 1000), r.step) for key, value in named
                                               if (x := number(value)) is not None)
            tags.setdefault(run, {}).update({self._key("hparam.", self.hparam_names, k, run): str(v)[:TAG_LIMIT]
                                             for k, v in r.hparams.items()})
        for e in events:
            run = self._run(e.member, e.old_hparams)
            metrics.setdefault(run, []).append(Metric("exploit_source", float(e.source), int(e.time * 1000), e.step))
            line = exploit_line(e.source, e.source_step, e.old_hparams, e.new_hparams)
            tags.setdefault(run, {})[f"exploit.{e.step}"] = line[:TAG_LIMIT]
            self.exploits.setdefault(e.member, []).append(
                {"step": e.step, "source": e.source, "source_step": e.source_step, "old_hparams": e.old_hparams,
                 "new_hparams": e.new_hparams, "time": e.time})
        for run, ms in metrics.items():
            for i in range(0, len(ms), BATCH):
                self.client.log_batch(run, metrics=ms[i:i + BATCH])
        for run, ts in tags.items():
            items = [RunTag(k, v) for k, v in ts.items()]
            for i in range(0, len(items), PER_BATCH):
                self.client.log_batch(run, tags=items[i:i + PER_BATCH])
        for member in {e.member for e in events}:  # the whole table again: an artifact is rewritten, not appended
            self.client.log_dict(self.runs[member], self.exploits[member], "exploits.json")
        for run, table in self.renamed.items():
            if len(table) != renamed_before.get(run, 0):
                self.client.log_dict(run, table, "renamed.json")

    def close(self, failed: bool = False) -> None:
        """End the member runs and the parent run: FINISHED, or FAILED when the export failed."""
        runs = [*getattr(self, "runs", {}).values(), *([self.parent] if self.parent else [])]
        status = "FAILED" if failed else "FINISHED"
        if failed:  # the error that failed the export is the one to tell; a server that is gone is not waited for
            try:
                with _quick_http():
                    for run in runs:
                        self.client.set_terminated(run, status)
            except Exception:
                pass
            return
        with self._calls():
            for run in runs:
                self.client.set_terminated(run, status)


def _param(key: str, value: Any) -> Any:
    from mlflow.entities import Param

    return Param(key, str(value)[:PARAM_LIMIT])


def _reason(exc: BaseException) -> str:
    """What went wrong, in one line, with the fix where it is known."""
    text = str(exc)
    if (failing := re.search(r"too many (\d+) error responses", text)) is not None:
        return f"the tracking server kept answering HTTP {failing.group(1)}; check the server and its logs"
    if "Max retries exceeded" in text or "Failed to establish a new connection" in text:
        return "no MLflow tracking server answers there; start it (`mlflow server`) or check the URI"
    if "file is not a database" in text:
        return "the file is not an MLflow database; name a new file or an MLflow tracking database"
    text = text.strip()
    return text.splitlines()[0] if text else type(exc).__name__
