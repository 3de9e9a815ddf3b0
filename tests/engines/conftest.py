"""The engine suite's environment: trainables' logs and pace, and one Ray session for every Ray case."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from faults.helpers import ROOT, TESTS
from engines.helpers import SLEEP, Logs, Outcome, run_on, spec


@pytest.fixture(scope="package", autouse=True)
def logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logs]:
    """Where the trainables write what they trained and in which process, set before any worker starts.

    Ray's workers inherit the environment Ray started with, so it is set once for the package, and
    each case clears the files (`Logs.clear`) instead of pointing them elsewhere.
    """
    folder = tmp_path_factory.mktemp("engine-logs")
    found = Logs(folder / "trained.log", folder / "pids.log")
    saved = dict(os.environ)
    os.environ.update(POPTRAIN_TEST_SLEEP=str(SLEEP), POPTRAIN_TEST_LOG=str(found.trained),
                      POPTRAIN_TEST_PIDS=str(found.pids),
                      PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), TESTS, os.environ.get("PYTHONPATH", "")]))
    yield found
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="package")
def ray_session(logs: Logs) -> Iterator[None]:
    """One local Ray for the package (starting one costs seconds); the Ray engine reuses it and leaves it running."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """The engine under test (parametrised by `engines.helpers.each_engine`), with Ray started for Ray."""
    name = request.param
    if name == "ray":
        request.getfixturevalue("ray_session")
    return name



@pytest.fixture(scope="package")
def reference(tmp_path_factory: pytest.TempPathFactory, logs: Logs) -> Outcome:
    """The suite's experiment run once on the serial engine, uninterrupted: what every engine must reproduce."""
    folder = tmp_path_factory.mktemp("serial-reference")
    outcome = Outcome.of(run_on(spec(f"sqlite:///{folder}/reference.db"), "serial"))
    assert outcome.decisions, "the reference run made no exploit: the suite would compare nothing"
    return outcome
