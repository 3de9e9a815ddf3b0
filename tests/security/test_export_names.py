"""Export of names MLflow or TensorBoard refuse, or that clean alike; a tracking URI's password never shown."""

from __future__ import annotations

import json
import os
import time

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import _validate_metric_name, _validate_param_name
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from calls import one_error
from checks import cli, free_port, reported
from poptrain.export.names import UniqueNames, markdown_text, mlflow_name, safe_name
from poptrain.redact import masked

# each metric its own value, so a merged or interleaved pair shows as two values under one name
METRICS = {"a:b": 1.0, "a;b": 2.0, "metric/..": 3.0, "../../x": 4.0, "y" * 300: 5.0, "a/../../b": 6.0, "a_b": 7.0,
           "y" * 300 + "z": 8.0, "train/loss": 9.0}
HPARAMS = {"lr": 0.1, "h:p": 0.2, "h;p": 0.3, "z" * 300: 0.4}


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    return reported(f"sqlite:///{tmp_path_factory.mktemp('names')}/s.db", METRICS, HPARAMS)


def test_mlflow_logs_every_name_once_under_a_name_it_takes(storage, tmp_path, monkeypatch):
    code, out, err = cli("export", "--storage", storage, "--experiment", "q", "--to", "mlflow", tmp_path / "mlruns")
    assert code == 0 and not err, err
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=str(tmp_path / "mlruns"))
    exp = client.get_experiment_by_name("q")
    children = client.search_runs([exp.experiment_id], filter_string="tags.`poptrain.member` != ''")
    assert len(children) == 2
    for run in children:
        run_id = run.info.run_id
        renamed = json.load(open(client.download_artifacts(run_id, "renamed.json", str(tmp_path / run_id))))
        by_kind: dict[str, dict[str, float]] = {"metric.": {}, "hparam.": {}}
        for key in run.data.metrics:
            _validate_metric_name(key)
            assert len(key) <= 250
            for prefix, found in by_kind.items():
                if key.startswith(prefix):
                    original = renamed.get(key, key[len(prefix):])
                    assert original not in found, f"{original!r} logged under two names"
                    history = client.get_metric_history(run_id, key)
                    assert sorted(m.step for m in history) == [1, 2]  # one point a step: nothing interleaved
                    found[original] = history[0].value
                    assert {m.value for m in history} == {history[0].value}
        assert by_kind["metric."] == METRICS and by_kind["hparam."] == HPARAMS
        initial = {renamed.get(k, k[len("initial."):]): float(v) for k, v in run.data.params.items()
                   if k.startswith("initial.")}
        assert initial == HPARAMS and all(len(k) <= 250 for k in run.data.params)
        for k in run.data.params:
            _validate_param_name(k)
        assert "metric.train/loss" in run.data.metrics and "metric.a_b" in run.data.metrics  # clean names stay
        assert set(renamed.values()) >= {"a;b", "metric/..", "../../x", "a/../../b", "h:p", "h;p"}


def test_tensorboard_keeps_names_that_clean_alike_apart(storage, tmp_path):
    code, out, err = cli("export", "--storage", storage, "--experiment", "q", "--to", "tensorboard", tmp_path / "tb")
    assert code == 0 and not err, err
    for member in range(2):
        acc = EventAccumulator(str(tmp_path / "tb" / "q" / f"member-{member}"), size_guidance={"scalars": 0,
                                                                                           "tensors": 0})
        acc.Reload()
        for prefix, reported_values in (("metric/", METRICS), ("hparam/", HPARAMS)):
            tags = [t for t in acc.Tags()["scalars"] if t.startswith(prefix)]
            values = []
            for tag in tags:
                points = acc.Scalars(tag)
                assert [p.step for p in points] == [1, 2] and len({p.value for p in points}) == 1, tag
                values.append(points[0].value)
            assert sorted(values) == pytest.approx(sorted(reported_values.values()))
        table = acc.Tensors("renamed/text_summary")[-1].tensor_proto.string_val[0].decode()
        for original in [*METRICS, *HPARAMS]:
            if safe_name(original) != original or original == "a_b":  # a_b comes after a:b took its name
                assert markdown_text(original) in table, original


def test_unique_names_are_stable_unique_and_valid():
    names = UniqueNames(mlflow_name, 242)
    originals = ["a:b", "a;b", "a_b", "a_b-2", "", "/", "//", ".", "..", "x/", "a//b", "a/./b", "ü", "q" * 500,
                 "q" * 500 + "!", "q" * 241 + "/"]
    logged = [names(o) for o in originals]
    assert len(set(logged)) == len(originals) and [names(o) for o in originals] == logged
    for name in logged:
        for prefix in ("metric.", "hparam.", "initial."):
            _validate_metric_name(prefix + name)
            assert len(prefix + name) <= 250
    assert names.renamed()[names("a;b")] == "a;b" and names("a:b") == "a_b" and names("a_b") == "a_b-3"


def test_a_password_in_the_url_is_masked():
    url = "http://bob:p%40ss-word@host:5000"
    text = f"API request to {url}/api failed; p@ss-word; p%40ss-word"
    shown = masked(text, url)
    assert "p%40ss" not in shown and "p@ss" not in shown and "http://bob:***@host:5000" in shown
    assert masked("http://u:a@h and a cat", "http://u:a@h") == "http://u:***@h and a cat"  # short: only in the URL
    assert masked("no secret", "sqlite:///x.db") == "no secret" and masked("x", "http://[bad") == "x"


def test_an_unreachable_tracking_server_fails_fast_in_one_line(storage, monkeypatch):
    for var in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    url = f"http://bob:s3cret-pw@127.0.0.1:{free_port()}"
    started = time.monotonic()
    code, out, err = cli("export", "--storage", storage, "--experiment", "q", "--to", "mlflow", url)
    assert time.monotonic() - started < 30
    line = one_error(code, out, err, "127.0.0.1", "bob:***@")
    assert "s3cret" not in out + err and "tracking server" in line
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # the quick settings were for the export only


def test_a_target_that_is_not_a_database_is_one_line(storage, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n" * 10)
    one_error(*cli("export", "--storage", storage, "--experiment", "q", "--to", "mlflow", f"sqlite:///{notes}"),
              str(notes), "not an MLflow database")
    assert notes.read_text() == "not a database\n" * 10


def test_mlflow_failures_say_what_to_do():
    from poptrain.export.mlflow import _reason

    refused = ("API request to http://h:1/api failed with exception HTTPConnectionPool(host='h', port=1): Max retries "
               "exceeded with url: /api (Caused by NewConnectionError(\"Failed to establish a new connection\"))")
    assert "no MLflow tracking server answers" in _reason(Exception(refused))
    failing = refused.replace("NewConnectionError(\"Failed to establish a new connection\")",
                              "ResponseError('too many 503 error responses')")
    assert "kept answering HTTP 503" in _reason(Exception(failing))
    assert _reason(Exception("first\nsecond")) == "first" and _reason(Exception("")) == "Exception"
