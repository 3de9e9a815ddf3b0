"""TensorBoard and MLflow export: a real run written out, read back with each logger's own reader."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import poptrain
from checks import cli, reported
from poptrain import export as exporting
from poptrain.export.tensorboard import TensorBoardSink
from trainables import Quadratic

STEPS = 9


class WithPosition(Quadratic):
    """The quadratic, also reporting its position: a second numeric metric and a text one."""

    def evaluate(self) -> dict[str, Any]:
        return {"score": 1.0 - (self.x - 3.0) ** 2, "x": self.x, "note": "<b>text</b>"}


def experiment(storage: str) -> poptrain.Experiment:
    return poptrain.Experiment(name="quad", trainable=WithPosition, space={"lr": poptrain.LogUniform(0.001, 0.5)},
                               metric="score", population=4, steps=STEPS, ready=poptrain.Every(3), storage=storage,
                               seed=3)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> poptrain.Result:
    storage = f"sqlite:///{tmp_path_factory.mktemp('run')}/store.db"
    result = experiment(storage).run(engine="serial")
    assert result.events(), "the run must exploit for the markers to be checked"
    return result


def expected(result: poptrain.Result) -> tuple[dict, dict]:
    """Per member: {step: (score, x, lr)} and [(step, source)] from the store."""
    reports: dict[int, dict[int, tuple]] = defaultdict(dict)
    for r in result.store.reports(result.name):
        reports[r.member][r.step] = (r.score, r.metrics["x"], r.hparams["lr"])
    exploits: dict[int, list] = defaultdict(list)
    for e in result.events():
        exploits[e.member].append((e.step, e.source))
    return reports, exploits


def storage_of(result: poptrain.Result) -> str:
    return result.spec["storage"]


def test_tensorboard_holds_every_score_and_exploit(run, tmp_path):
    code, out, err = cli("export", "--storage", storage_of(run), "--experiment", "quad", "--to", "tensorboard",
                         tmp_path / "tb")
    assert code == 0, err
    reports, exploits = expected(run)
    assert sorted(os.listdir(tmp_path / "tb" / "quad")) == [f"member-{m}" for m in range(4)]
    for member, by_step in reports.items():
        acc = EventAccumulator(str(tmp_path / "tb" / "quad" / f"member-{member}"), size_guidance={"scalars": 0,
                                                                                                "tensors": 0})
        acc.Reload()
        for i, tag in enumerate(("score", "metric/x", "hparam/lr")):
            points = {s.step: s.value for s in acc.Scalars(tag)}
            assert sorted(points) == list(range(1, STEPS + 1))
            assert all(points[step] == pytest.approx(v[i], rel=1e-6) for step, v in by_step.items())
        assert "metric/note" not in acc.Tags()["scalars"]  # text is not a scalar
        markers = [(s.step, s.value) for s in acc.Scalars("exploit_source")] if exploits[member] else []
        assert markers == [(step, float(source)) for step, source in exploits[member]]
        if exploits[member]:
            texts = [t.tensor_proto.string_val[0].decode() for t in acc.Tensors("exploit/text_summary")]
            assert len(texts) == len(exploits[member]) and all("copied member" in t for t in texts)
    assert any(exploits.values())


def test_mlflow_holds_every_score_and_exploit(run, tmp_path, monkeypatch):
    code, out, err = cli("export", "--storage", storage_of(run), "--experiment", "quad", "--to", "mlflow",
                         tmp_path / "mlruns")
    assert code == 0, err
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # reading a folder store back in MLflow 3
    client = MlflowClient(tracking_uri=str(tmp_path / "mlruns"))
    exp = client.get_experiment_by_name("quad")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`poptrain.experiment` = 'quad'")
    assert len(parents) == 1 and parents[0].data.params["population"] == "4"
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
    runs = {int(r.data.tags["poptrain.member"]): r for r in children}
    reports, exploits = expected(run)
    assert sorted(runs) == [0, 1, 2, 3]
    final = {m.id: m.hparams for m in run.store.members("quad")}
    for member, by_step in reports.items():
        run_id = runs[member].info.run_id
        for i, key in enumerate(("score", "metric.x", "hparam.lr")):
            points = {m.step: m.value for m in client.get_metric_history(run_id, key)}
            assert sorted(points) == list(range(1, STEPS + 1))
            assert all(points[step] == pytest.approx(v[i], rel=1e-9) for step, v in by_step.items())
        assert float(runs[member].data.tags["hparam.lr"]) == pytest.approx(final[member]["lr"])
        markers = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "exploit_source"))
        assert markers == sorted((step, float(source)) for step, source in exploits[member])
        assert sorted(int(k.split(".")[1]) for k in runs[member].data.tags if k.startswith("exploit.")) == \
            sorted(step for step, _ in exploits[member])
        if exploits[member]:
            table = json.load(open(client.download_artifacts(run_id, "exploits.json", str(tmp_path))))
            assert [(row["step"], row["source"]) for row in table] == exploits[member]


def test_follow_exports_while_the_run_trains(tmp_path, monkeypatch):
    storage = f"sqlite:///{tmp_path}/live.db"
    spec = experiment(storage)
    spec.create()
    monkeypatch.setenv("POPTRAIN_TEST_SLEEP", "0.05")  # long enough for several polls during the run
    passes: list[int] = []
    write = TensorBoardSink.write

    def counting(self, reports, events):
        passes.append(len(reports))
        write(self, reports, events)

    monkeypatch.setattr(TensorBoardSink, "write", counting)
    follower = threading.Thread(target=exporting.export, args=(storage, "quad", "tensorboard", str(tmp_path / "tb")),
                                kwargs={"follow": True, "every": 0.1}, daemon=True)
    follower.start()
    spec.run(engine="serial")
    follower.join(timeout=60)
    assert not follower.is_alive(), "--follow must stop once every member is done"
    assert sum(passes) == 4 * STEPS and len([n for n in passes if n]) > 1  # written in several passes, live
    acc = EventAccumulator(str(tmp_path / "tb" / "quad" / "member-0"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [s.step for s in acc.Scalars("score")] == list(range(1, STEPS + 1))


def test_follow_writes_every_surviving_event_once_across_a_rollback(storage):
    """A worker dies, another takes its member over and rolls it back (deleting its late events), new events follow."""
    from collections import Counter

    from poptrain.export.feed import Feed
    from poptrain.store import Event, open_store
    from poptrain.testing.store_suite import ckpt, make_experiment, w

    store = make_experiment(open_store(storage), n=3)
    feed = Feed(open_store(storage, create=False, read_only=True), "e")
    written: list = []
    reports_written: list = []

    def follow() -> None:
        reports, events = feed.new()
        written.extend(events)
        reports_written.extend(reports)

    now = time.time()
    for step in range(1, 5):
        store.report("e", 0, w(0), step, step / 10, {}, {"lr": 0.1}, now + step)
    store.add_checkpoint("e", ckpt(0, 2), 2, 3, now, w(0))
    store.record_exploit("e", Event(1, 2, 2, 2, {"lr": 0.2}, {"lr": 0.3}, now + 1), w(1))
    store.record_exploit("e", Event(0, 3, 2, 3, {"lr": 0.1}, {"lr": 0.4}, now + 3), w(0))
    store.record_exploit("e", Event(0, 4, 2, 4, {"lr": 0.4}, {"lr": 0.5}, now + 4), w(0))
    follow()
    assert store.expire_worker("e", w(0)) == 1  # w0 died
    taken = store.claim("e", "x", 60, time.time(), barrier=False)
    assert taken is not None and taken.id == 0
    store.rollback("e", 0, "x", store.checkpoints("e", 0)[0])  # drops member 0's events after step 2
    later = now + 10
    store.report("e", 0, "x", 3, 0.5, {}, {"lr": 0.5}, later)
    store.record_exploit("e", Event(0, 3, 1, 2, {"lr": 0.5}, {"lr": 0.6}, later), "x")
    follow()  # within one poll: two events now, three read before (a read by position skipped it)
    store.report("e", 0, "x", 4, 0.6, {}, {"lr": 0.6}, later + 1)
    store.record_exploit("e", Event(0, 4, 1, 3, {"lr": 0.6}, {"lr": 0.7}, later + 1), "x")
    store.record_exploit("e", Event(2, 1, 1, 1, {"lr": 0.3}, {"lr": 0.8}, later + 2), w(2))
    follow()
    follow()  # nothing new: nothing written twice

    def key(x):
        return (x.member, x.step, x.time)

    surviving, counts = store.events("e"), Counter(key(e) for e in written)
    assert len(surviving) == 4 and all(counts[key(e)] == 1 for e in surviving), counts
    assert set(counts.values()) == {1}  # the two deleted events were written once too, before the rollback
    report_counts = Counter(key(r) for r in reports_written)
    assert all(report_counts[key(r)] == 1 for r in store.reports("e")) and set(report_counts.values()) == {1}
    assert len(reports_written) == 4 + 2  # steps 1-4, then steps 3 and 4 again after the takeover


def test_bad_targets_are_one_error_line(run, tmp_path):
    storage = storage_of(run)
    code, _, err = cli("export", "--storage", storage, "--experiment", "quad", "--to", "wandb", tmp_path)
    assert code == 2 and err.startswith("error:") and "wandb" in err and len(err.strip().splitlines()) == 1
    blocked = tmp_path / "a-file"  # a folder inside a file cannot be made, even by root (a read-only mode can)
    blocked.write_text("")
    for to in ("tensorboard", "mlflow"):
        code, _, err = cli("export", "--storage", storage, "--experiment", "quad", "--to", to, blocked / "out")
        assert code == 2 and err.startswith("error:") and str(blocked / "out") in err, err
        assert len(err.strip().splitlines()) == 1
    code, _, err = cli("export", "--storage", storage, "--experiment", "quad", "--to", "mlflow", "bogus://x")
    assert code == 2 and err.startswith("error: cannot log to MLflow at bogus://x") and len(err.splitlines()) == 1
    code, _, err = cli("export", "--storage", storage, "--experiment", "nope", "--to", "tensorboard", tmp_path / "x")
    assert code == 2 and err.startswith("error:") and not (tmp_path / "x").exists()
    assert cli("export", "--storage", storage, "--experiment", "quad", "--to", "tensorboard", tmp_path / "tb")[0] == 0
    code, _, err = cli("export", "--storage", storage, "--experiment", "quad", "--to", "tensorboard", tmp_path / "tb")
    assert code == 2 and "already holds" in err  # a second export would show every point twice


def test_store_text_is_escaped_for_tensorboard_markdown():
    from poptrain.export.names import markdown_text, safe_name

    shown = markdown_text("<script>alert(1)</script> *bold* [link](http://x)")
    assert "<" not in shown and ">" not in shown and "\\*bold\\*" in shown and "\\[link\\]" in shown
    assert safe_name("../../etc") == "_.._etc" and "/" not in safe_name("a/b")


def test_every_must_be_positive(run, tmp_path):
    code, _, err = cli("export", "--storage", storage_of(run), "--experiment", "quad", "--to", "tensorboard",
                       tmp_path, "--follow", "--every", "0")
    assert code == 2 and err.startswith("error: --every 0") and not os.listdir(tmp_path)


def _runs(folder, monkeypatch) -> dict[str, str]:
    """Each MLflow run in the folder store's experiment 'q' by name, and its status."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=str(folder))
    exp = client.get_experiment_by_name("q")
    return {r.info.run_name: r.info.status for r in client.search_runs([exp.experiment_id])} if exp else {}


def _unfinished(tmp_path) -> str:
    """Experiment 'q' whose two members reported steps 1 and 2 and will never report again."""
    return reported(f"sqlite:///{tmp_path}/s.db", {"x": 1.0}, {"lr": 0.1})


def test_a_failed_export_marks_its_runs_failed(tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException

    storage = _unfinished(tmp_path)
    log_batch = MlflowClient.log_batch

    def refusing(self, run_id, metrics=(), **kwargs):
        if metrics:
            raise MlflowException("the server refused the batch\nsecond line")
        return log_batch(self, run_id, metrics=metrics, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", refusing)
    code, out, err = cli("export", "--storage", storage, "--experiment", "q", "--to", "mlflow", tmp_path / "mlruns")
    assert code == 2 and err.startswith("error: cannot log to MLflow at") and "refused the batch" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    monkeypatch.setattr(MlflowClient, "log_batch", log_batch)
    assert _runs(tmp_path / "mlruns", monkeypatch) == {"q": "FAILED", "member-0": "FAILED", "member-1": "FAILED"}


def _follow_in_thread(storage: str, target) -> tuple[threading.Thread, list]:
    """`poptrain export --follow` to TensorBoard in a thread; the list gets (code, out, err)."""
    answer: list = []
    thread = threading.Thread(target=lambda: answer.append(cli(
        "export", "--storage", storage, "--experiment", "q", "--to", "tensorboard", target, "--follow",
        "--every", "0.05")), daemon=True)
    thread.start()
    while not os.path.isdir(os.path.join(target, "q", "member-1")):  # its first pass is written
        assert thread.is_alive(), answer
        time.sleep(0.05)
    return thread, answer


def test_follow_stops_when_the_sqlite_file_is_deleted(tmp_path):
    storage = _unfinished(tmp_path)
    thread, answer = _follow_in_thread(storage, tmp_path / "tb")
    time.sleep(0.3)
    assert thread.is_alive()  # members are still running: it keeps following
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{tmp_path}/s.db{suffix}"):
            os.remove(f"{tmp_path}/s.db{suffix}")
    thread.join(timeout=20)
    assert not thread.is_alive(), "--follow must stop once its store is deleted"
    code, out, err = answer[0]
    assert code == 2 and err.startswith("error:") and "s.db was deleted" in err and len(err.strip().splitlines()) == 1


def test_follow_stops_when_the_experiment_is_deleted(tmp_path):
    import sqlite3

    storage = _unfinished(tmp_path)
    thread, answer = _follow_in_thread(storage, tmp_path / "tb")
    with sqlite3.connect(f"{tmp_path}/s.db") as db:
        db.execute("DELETE FROM experiments WHERE name = 'q'")
    thread.join(timeout=20)
    assert not thread.is_alive(), "--follow must stop once its experiment is deleted"
    code, out, err = answer[0]
    assert code == 2 and err.startswith("error: experiment 'q' was deleted") and len(err.strip().splitlines()) == 1


def test_follow_stops_at_its_timeout_and_finishes_the_runs(tmp_path, monkeypatch):
    storage = _unfinished(tmp_path)
    started = time.monotonic()
    code, out, err = cli("export", "--storage", storage, "--experiment", "q", "--to", "mlflow", tmp_path / "mlruns",
                         "--follow", "--every", "0.1", "--timeout", "0.5")
    assert time.monotonic() - started < 20
    assert code == 2 and err.startswith("error: --timeout 0.5s ran out") and len(err.strip().splitlines()) == 1
    assert "4 reports exported" in err
    assert _runs(tmp_path / "mlruns", monkeypatch) == {"q": "FINISHED", "member-0": "FINISHED",
                                                       "member-1": "FINISHED"}
    for bad in ("0", "-1", "nan"):
        code, _, err = cli("export", "--storage", storage, "--experiment", "q", "--to", "tensorboard",
                           tmp_path / "tb", "--follow", "--timeout", bad)
        assert code == 2 and err.startswith(f"error: --timeout {bad}") and not (tmp_path / "tb").exists()


def test_sigterm_stops_following_and_finishes_the_runs(tmp_path, monkeypatch):
    import signal
    import subprocess
    import sys

    storage = _unfinished(tmp_path)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    follower = subprocess.Popen([sys.executable, "-m", "poptrain", "export", "--storage", storage, "--experiment",
                                 "q", "--to", "mlflow", str(tmp_path / "mlruns"), "--follow", "--every", "0.1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": src})
    try:
        deadline = time.monotonic() + 90
        while len(_runs(tmp_path / "mlruns", monkeypatch) if (tmp_path / "mlruns").exists() else {}) < 3:
            assert follower.poll() is None and time.monotonic() < deadline, follower.communicate()
            time.sleep(0.2)
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0 and "stopped following" in out and "Traceback" not in err, (out, err)
    assert _runs(tmp_path / "mlruns", monkeypatch) == {"q": "FINISHED", "member-0": "FINISHED",
                                                       "member-1": "FINISHED"}
