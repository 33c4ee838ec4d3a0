"""The Train and Experiments pages with AppTest: the shipped examples on a fresh start, the URL state,
and the class experiment (its projector view)."""
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from alexnet_viz.runs.store import list_runs, runs_dir

from tests import examples_fake
from tests.conftest import ROOT

APPS = ROOT / "tests" / "apps"


def app(name: str, **params) -> AppTest:
    at = AppTest.from_file(str(APPS / f"{name}.py"), default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not [e.value for e in at.error if "Something went wrong" in e.value]


def wait_for(at: AppTest, done, timeout: float = 90) -> AppTest:
    deadline = time.time() + timeout
    while time.time() < deadline and not done(at):
        time.sleep(0.3)
        at.run()
    assert done(at)
    return at


def test_a_fresh_start_shows_the_shipped_run_which_cannot_be_deleted_and_resumes_as_a_copy(tmp_path, monkeypatch):
    mod = examples_fake.install(tmp_path / "shipped", monkeypatch)
    mini = mod.example_run()
    metrics = (mini.path / "metrics.jsonl").read_bytes()
    at = app("train", sid="fresh")
    no_exception(at)
    table = at.dataframe[0].value
    assert table["example"].tolist() == [True] * 5 and table["run"].tolist()[0] == "mini28"
    pick = next(s for s in at.selectbox if s.label == "Look at one run")
    assert pick.value == str(mini.path)  # no run of one's own: the shipped trained network
    assert any("shipped example" in c.value for c in at.caption)
    assert any(e.label.startswith("Inside the network") for e in at.expander)  # its internals
    assert len(at.get("plotly_chart")) >= 2  # its curves (and more) are drawn
    assert any("Misclassified" in m.value for m in at.markdown)  # its predictions match the sample here
    assert not [b for b in at.button if b.label == "Delete this run"]
    assert any("cannot be deleted" in c.value for c in at.caption)
    at.toggle(key="embedding").set_value(True).run()
    no_exception(at)
    assert any("test images, one point each" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Resume (+1 epoch)").click().run()
    no_exception(at)
    wait_for(at, lambda a: bool(a.success))
    assert "finished" in at.success[0].value and str(mini.path) not in at.success[0].value
    (own,) = list_runs(owners={"fresh"})
    assert Path(own.path).parent == runs_dir() and [e["epoch"] for e in own.epochs] == [1, 2]
    assert (mini.path / "metrics.jsonl").read_bytes() == metrics  # the shipped files never change
    table = at.dataframe[0].value
    assert table["example"].tolist() == [False] + [True] * 5


def test_the_experiments_page_answers_from_the_shipped_set_before_anyone_trains(tmp_path, monkeypatch):
    examples_fake.install(tmp_path / "shipped", monkeypatch, trained=False)
    at = app("experiments", sid="fresh2")
    no_exception(at)
    assert any("shipped example's runs (2 seeds, 1 epoch of at most 40 batches)" in c.value for c in at.caption)
    table = at.dataframe[0].value
    assert table["variant"].tolist() == ["ReLU", "sigmoid"] and table["seeds"].tolist() == [2, 2]
    sentence = at.info[0].value
    assert sentence.startswith("ReLU beat sigmoid") and "0.820" in sentence and "0.430" in sentence
