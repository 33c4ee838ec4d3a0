"""The Train and Experiments pages with AppTest: the shipped examples on a fresh start, the URL state,
and the class experiment (its projector view)."""
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from alexnet_viz.runs.store import list_runs, runs_dir

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
        time.sleep(1.0)  # each poll reruns the page, beside the runs it waits for
        at.run()
    assert done(at)
    return at


def test_a_fresh_start_shows_the_shipped_run_which_cannot_be_deleted_and_resumes_as_a_copy():
    from alexnet_viz.runs.examples import example_run, example_runs
    mini = example_run()
    before = {p: p.read_bytes() for p in mini.path.rglob("*") if p.is_file()}
    at = app("train", sid="fresh")
    no_exception(at)
    table = at.dataframe[0].value
    assert table["example"].tolist() == [True] * len(example_runs()) and table["run"].tolist()[0] == "mini28"
    assert at.selectbox(key="tr_run").value == str(mini.path)  # no run of one's own: the shipped network
    assert any("A shipped example" in c.value for c in at.caption)
    assert any(e.label.startswith("Inside the network") for e in at.expander)  # its internals
    assert len(at.get("plotly_chart")) >= 4  # runs compared, its curves, internals
    assert not [b for b in at.button if b.label == "Delete this run"]
    assert any("cannot be deleted" in c.value for c in at.caption)
    assert url(at) == {"sid": "fresh", "run": "mini28"}
    at.toggle(key="embedding").set_value(True).run()
    no_exception(at)
    kept = len(mini.snapshots())
    assert any("test images, one point each" in c.value and f"{kept} snapshot(s)" in c.value for c in at.caption)
    at.toggle(key="embedding").set_value(False).run()  # each poll below redraws the page beside the run
    next(b for b in at.button if b.label == "Resume (+1 epoch)").click().run()
    no_exception(at)
    wait_for(at, lambda a: bool(a.success), timeout=300)
    assert "finished" in at.success[0].value and str(mini.path) not in at.success[0].value
    (own,) = [r for r in list_runs(owners={"fresh"}) if not r.example]
    assert Path(own.path).parent == runs_dir() and [e["epoch"] for e in own.epochs] == list(range(1, 12))
    assert {p: p.read_bytes() for p in mini.path.rglob("*") if p.is_file()} == before  # shipped files unchanged
    assert at.dataframe[0].value["example"].tolist() == [False] + [True] * len(example_runs())


def url(at: AppTest) -> dict:
    return {k: (v[-1] if isinstance(v, list) else v) for k, v in at.query_params.items()}


def test_the_experiments_state_goes_into_the_url_and_a_new_session_opens_the_same_view():
    at = app("experiments", sid="first")
    assert url(at) == {"sid": "first"}  # a fresh page's defaults need nothing in the link
    at.selectbox(key="ex_name").set_value("dropout").run()
    at.number_input(key="ex_epochs").set_value(2).run()
    at.number_input(key="ex_cap").set_value(7).run()
    at.number_input(key="ex_seeds").set_value(3).run()
    no_exception(at)
    assert url(at) == {"sid": "first", "exp": "dropout", "epochs": "2", "cap": "7", "seeds": "3"}
    shared = {k: v for k, v in url(at).items() if k != "sid"}
    other = app("experiments", **shared)  # another browser: a session of its own
    no_exception(other)
    assert not [w for w in other.warning if "link was ignored" in w.value]
    assert [other.selectbox(key="ex_name").value] + [other.number_input(key=k).value
                                                     for k in ("ex_epochs", "ex_cap", "ex_seeds")] == ["dropout", 2, 7, 3]
    assert any("6 runs, 84 training batches" in c.value for c in other.caption)  # 2 variants × 3 seeds × 2 × 7
    assert url(other)["sid"] != "first" and {k: v for k, v in url(other).items() if k != "sid"} == shared
    # the user's changes win over the link afterwards
    other.number_input(key="ex_cap").set_value(9).run()
    assert other.number_input(key="ex_cap").value == 9 and url(other)["cap"] == "9"


def test_a_hostile_experiments_link_is_named_in_one_notice_and_the_page_keeps_its_defaults():
    at = app("experiments", exp="<script>", cap="-5", seeds="9999", epochs="2", device="tpu")
    no_exception(at)
    (notice,) = [w.value for w in at.warning if "link was ignored" in w.value]
    for name in ("exp", "cap", "seeds", "device"):
        assert name in notice
    assert at.selectbox(key="ex_name").value == "relu-vs-sigmoid" and at.number_input(key="ex_epochs").value == 2
    assert "cap" not in url(at) and url(at)["epochs"] == "2"


def test_the_train_pages_selected_run_is_in_the_url_and_opens_in_another_browser():
    from tests.test_app import trained_run
    older = trained_run("owner1", 1)
    time.sleep(1.1)  # run folders are named by the second
    newer = trained_run("owner1", 1)
    at = app("train", sid="owner1")
    no_exception(at)
    assert url(at)["run"] == newer.path.name  # the newest finished run, looked at by default
    at.selectbox(key="tr_run").set_value(str(older.path)).run()
    no_exception(at)
    assert url(at) == {"sid": "owner1", "run": older.path.name}
    assert [b for b in at.button if b.label == "Delete this run"]  # one's own run
    other = app("train", run=older.path.name)  # another browser, another session
    no_exception(other)
    assert other.selectbox(key="tr_run").value == str(older.path)
    assert url(other)["run"] == older.path.name
    assert any("Another session's run" in c.value for c in other.caption)
    assert not [b for b in other.button if b.label == "Delete this run"]
    gone = app("train", run="no-such-run")
    assert any("link was ignored: run" in w.value for w in gone.warning)
    no_exception(gone)


def test_the_projector_pools_the_finished_seeds_of_a_class():
    import numpy as np

    from alexnet_viz.training.classroom import join_class, start_class
    from alexnet_viz.training.experiments import Budget
    from tests.test_classroom import finished_seat
    cls = start_class("relu-vs-sigmoid", Budget(1, 2, "cpu"))
    relu, sig = [0.80, 0.84, 0.79], [0.50, 0.41, 0.47]
    for seed, sid in enumerate(("s-a", "s-b", "s-c")):
        cls, _ = join_class(cls.code, sid)
        finished_seat(cls, seed, {"ReLU": relu[seed], "sigmoid": sig[seed]})
    at = app("experiments", sid="s-a", **{"class": cls.code})  # a student's reload: seat 0, all trained
    no_exception(at)
    assert any(f"Class experiment {cls.code}: ReLU vs sigmoid" == h.value for h in at.subheader)
    assert any("**3 joined** · 6 of 6 runs finished" in m.value for m in at.markdown)
    assert any("This session is seed 0" in c.value for c in at.caption)
    assert any("3 students × 2 variants = 6 runs" in c.value for c in at.caption)
    table = at.dataframe[0].value
    assert table["variant"].tolist() == ["ReLU", "sigmoid"] and table["seeds"].tolist() == [3, 3]
    assert table["mean test acc"].tolist() == [round(np.mean(relu), 3), round(np.mean(sig), 3)]
    assert table["± seed sd"].tolist() == [round(np.std(relu, ddof=1), 3), round(np.std(sig, ddof=1), 3)]
    assert at.info[0].value.startswith("ReLU beat sigmoid")
    assert len(at.get("image")) == 2  # the class's QR code, and the Share popover's
    assert url(at)["class"] == cls.code
    # a new student opens the link: seed 3, its two (tiny) runs queued and trained, then pooled too
    new = app("experiments", **{"class": cls.code})
    no_exception(new)
    assert any("This session is seed 3" in c.value for c in new.caption)
    wait_for(new, lambda a: any("**4 joined** · 8 of 8 runs finished" in m.value for m in a.markdown), timeout=180)
    assert new.dataframe[0].value["seeds"].tolist() == [4, 4]


def test_the_teacher_sees_the_cost_then_starts_a_class_and_gets_its_link():
    at = app("experiments", sid="teacher")
    assert any("30 students × 2 variants = 60 runs of 1 epoch of at most 40 batches" in c.value for c in at.caption)
    at.number_input(key="cl_students").set_value(10).run()
    assert any("10 students × 2 variants = 20 runs" in c.value for c in at.caption)
    at.number_input(key="cl_cap").set_value(2).run()
    next(b for b in at.button if b.label == "Start a class experiment").click().run()
    no_exception(at)
    code = url(at)["class"]
    assert any(h.value.startswith(f"Class experiment {code}") for h in at.subheader)
    assert any(f"?class={code}" in m.value for m in at.markdown)
    assert any("This session is seed 0" in c.value for c in at.caption)  # the teacher's session takes a seat too
    wait_for(at, lambda a: any("**1 joined** · 2 of 2 runs finished" in m.value for m in a.markdown), timeout=180)
    next(b for b in at.button if b.label == "Leave the class view").click().run()
    assert "class" not in url(at) and not any(h.value.startswith("Class experiment") for h in at.subheader)
