"""A class on one machine: one probe student's latency beside N classmates and a hostile session.

`python -m alexnet_viz bench classroom [--classmates N] [--quick]` starts `streamlit run app.py`, drives a
real Chromium session for the probe (Playwright, Debian's /usr/bin/chromium) and prints, beside the probe
alone in the same run: the probe's p50/p95 per interaction, the server's CPU seconds per watching session
per minute, the watched run's examples/s against the CLI's, exceptions seen, and the server's peak memory.

Phases, each timed by the probe's own cycles (an Architect preset switch, an Explore upload, three layer
changes, all on d2l's network): alone; watching (two sessions watch a run, nobody else: the server's cost of
watching); class (N classmates loop the same pages, two of them training and watching); hostile (the class
plus one session uploading 48 MP photos, opening the largest network and asking for the largest batch).
Where the machine has more than one core, the server and its training processes get one core and the
probe's browser the others, so that rendering in the browser does not count as server time.

The classmates are sessions over the app's websocket (bench/wire.py), not browsers: the server does for them
what it does for a browser (every script run, every message, the uploads, the images, the live parts'
timed reruns), but nothing is drawn. In a class each student's browser draws on their own laptop; here eight
Chromiums beside the probe's on one core finished no loop at all (measured), so they loaded the browser core
instead of the server. The probe's cycle also runs over the websocket, giving the server's share of its wait.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from alexnet_viz.bench import print_table
from alexnet_viz.bench.wire import Session

CHROMIUM = "/usr/bin/chromium"
APP = Path(__file__).resolve().parents[2] / "app.py"
LAYERS = ("relu2", "relu3", "relu5")  # three layer changes on d2l's network
SHOTS = APP.parent / "test-artifacts"  # a failed probe cycle's screenshot (git ignores the folder)
TRAINERS = 2                           # of the classmates, those who train and watch the Train page
UNTRAINED = "Untrained (the Architect's network)"  # Explore's Model choice for the Architect's network
CLK = os.sysconf("SC_CLK_TCK")
# The class's process shares the browser core with the probe's Chromium: its scheduler group (see
# _lower_autogroup) at this nice gives the probe's browser the core first; the table says how much CPU the
# class used and how many loops it did, so a starved class shows.
CLASS_GROUP_NICE = 10


# ---- the server and what it costs -------------------------------------------------------------

def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_split() -> tuple[set[int], set[int]]:
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[0]}, set(cpus[1:])) if len(cpus) > 1 else (set(cpus), set(cpus))


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants (the training workers count)."""
    total = 0
    for p in [pid, *_descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _descendants(pid: int) -> list[int]:
    """The pids of a process's children, their children, and so on."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for t in Path(f"/proc/{p}/task").iterdir():
                kids = [int(c) for c in (t / "children").read_text().split()]
                out += kids
                todo += kids
        except OSError:
            continue
    return out


class Server:
    """`streamlit run app.py` on a free port with its own runs and cache folders, pinned to `cpus`."""

    def __init__(self, work: Path, cpus: set[int], data: dict | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.runs = work / "runs"
        env = {**os.environ, "ALEXNET_VIZ_RUNS": str(self.runs), "ALEXNET_VIZ_CACHE": str(work / "cache"),
               "ALEXNET_VIZ_OFFLINE": "1", "PYTHONFAULTHANDLER": "1", **(data or {})}  # a crash's traceback, in its log
        self.log = open(work / "streamlit.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=APP.parent, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.sched_setaffinity(0, cpus))
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(self.url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        else:
            self.close()
            raise RuntimeError("streamlit did not answer its health check in 90 s")
        self.peak_rss = 0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            self.peak_rss = max(self.peak_rss, _tree_rss(self.proc.pid))

    def cpu(self) -> float:
        return _cpu_seconds(self.proc.pid)

    def close(self) -> None:
        self._stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def bench_data() -> tuple[dict, str]:
    """The Fashion-MNIST that the server and the CLI both train on here: ALEXNET_VIZ_DATA, else the
    project's ../shared/data, else the bundled sample (a 79-batch epoch: its runs are mostly start-up)."""
    for folder in (os.environ.get("ALEXNET_VIZ_DATA"), APP.parents[1] / "shared" / "data"):
        if folder and (Path(folder) / "FashionMNIST" / "raw").is_dir():
            return {"ALEXNET_VIZ_DATA": str(folder)}, f"Fashion-MNIST from {folder}"
    return {}, "the bundled sample (no Fashion-MNIST folder found)"


def cli_rate(work: Path, cpus: set[int], env: dict, tag: str) -> float:
    """The Train page's default run (mini28, one epoch) from the command line on the server's core,
    measured as the app's runs are (steady_rate): the watched run's baseline."""
    runs = work / f"cli-{tag}"
    subprocess.run([sys.executable, "-m", "alexnet_viz", "train", "--preset", "mini28", "--epochs", "1",
                    "--run-dir", str(runs)], capture_output=True, text=True, timeout=900,
                   env={**os.environ, **env, "ALEXNET_VIZ_CACHE": str(work / "cache")},
                   preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    return RunRates(runs).steady_rate()


def _records(lines: list[str]):
    """The records of metrics.jsonl lines; the last one may be half written while a run appends it."""
    for line in lines:
        try:
            yield json.loads(line)
        except ValueError:
            continue


def _state(status: Path) -> str | None:
    """A run's state from its status.json; "running" while the file is being rewritten (look again)."""
    try:
        return json.loads(status.read_text()).get("state")
    except (OSError, ValueError):
        return "running"


async def _until(check, timeout: float) -> None:
    """Until `check()` holds, looking every second, or `timeout` seconds."""
    end = time.time() + timeout
    while time.time() < end and not check():
        await asyncio.sleep(1)


class RunRates:
    """examples/s of training runs in a folder, from the step records appended to their metrics.jsonl
    since mark(): between consecutive records of one epoch past its first WARM steps, examples over
    seconds (the engine's own figure counts from the run's start, so on short runs it is start-up)."""

    WARM = 20

    def __init__(self, runs: Path):
        self.runs, self.seen = runs, {}

    def mark(self) -> None:
        self.seen = {m: len(m.read_text().splitlines()) for m in self.runs.rglob("metrics.jsonl")}

    async def training(self, timeout: float) -> None:
        """Until a run in the folder has reported a step past WARM (or `timeout` seconds)."""
        await _until(lambda: any(r.get("step", 0) > self.WARM for m in self.runs.rglob("metrics.jsonl")
                                 for r in _records(m.read_text().splitlines()[-3:])), timeout)

    async def ended(self, timeout: float) -> None:
        """Until no run in the folder is running (or `timeout` seconds)."""
        await _until(lambda: "running" not in {_state(st) for st in self.runs.rglob("status.json")}, timeout)

    def steady_rate(self) -> float:
        examples = seconds = 0.0
        for m in self.runs.rglob("metrics.jsonl"):
            batch = json.loads((m.parent / "config.json").read_text())["train"]["batch_size"]
            last = None
            for rec in _records(m.read_text().splitlines()[self.seen.get(m, 0):]):
                if rec.get("kind") != "step" or rec["step"] <= self.WARM:
                    last = None  # an epoch's end (its test pass) or the warm-up: not training time
                    continue
                if last is not None:
                    examples += (rec["step"] - last["step"]) * batch
                    seconds += rec["elapsed"] - last["elapsed"]
                last = rec
        return examples / seconds if seconds else float("nan")


# ---- what a student does in the browser ---------------------------------------------------------

def _photo(w: int, h: int, quality: int = 90) -> bytes:
    rng = np.random.default_rng(w)
    small = rng.integers(0, 255, (max(h // 64, 8), max(w // 64, 8), 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((w, h), Image.BILINEAR)  # smooth, so a 48 MP JPEG stays small
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def d2l_layers() -> list[str]:
    """What Explore's Layer slider offers for d2l's network: its layers whose output is maps (the page's
    DOM shows only the two ends)."""
    from alexnet_viz.config import get_preset
    from alexnet_viz.inspect.walk import summarized
    return [r.name for r in summarized(get_preset("d2l")).rows if len(r.output_shape) == 3]


START_S = 15  # an action's script run begins within this, or it started none
PICKS, PICKED_S = 3, 2  # a selectbox pick is tried this many times, each read back within PICKED_S
REPICKS = [0]           # the probe's picks made again (a click on the open list that missed)
NO_RUN = [0]            # the probe's actions that showed no script run in START_S (their time includes it)
STARTS_JS = """window.__stStarts = 0;
new MutationObserver(changes => {
    for (const c of changes)
        if (c.target.getAttribute("data-test-script-state") !== "notRunning") window.__stStarts++;
}).observe(document, {attributes: true, subtree: true, attributeFilter: ["data-test-script-state"]});"""
IDLE_JS = """() => {
    const app = document.querySelector("[data-testid='stApp']");
    return app && app.getAttribute("data-test-script-state") === "notRunning" && !document.querySelector("[data-stale='true']");
}"""


class Student:
    """One browser session (its own context) and the interactions the bench times."""

    def __init__(self, browser, url: str, name: str, errors: list):
        self.browser, self.url, self.name, self.errors = browser, url, name, errors

    async def open(self, path: str = "") -> None:
        self.ctx = await self.browser.new_context(viewport={"width": 1400, "height": 1600})
        await self.ctx.add_init_script(STARTS_JS)
        self.seen = 0
        self.page = await self.ctx.new_page()
        self.page.set_default_timeout(180_000)
        await self.page.goto(f"{self.url}/{path}")
        await self.idle()

    async def idle(self, timeout: float = 180) -> None:
        """Until a script run has begun since the last idle() (the action's: up to START_S for it) and has
        finished, with nothing stale left on the page. The app's root says the run's state
        (`data-test-script-state`: "rerunRequested" or "running", then "notRunning"; STARTS_JS counts the
        runs begun) and Streamlit marks the previous run's elements not yet replaced with `data-stale`.
        Waiting for the status widget to go instead let a loaded server's page be read before the action's
        run had begun (an upload's run starts only once the file is sent): the probe read the previous
        network's Layer slider, and timed an upload at 0.2 s."""
        p = self.page
        try:
            await p.wait_for_function("n => (window.__stStarts || 0) > n", arg=self.seen, timeout=START_S * 1000,
                                      polling=20)
        except Exception:  # noqa: BLE001 -- an action that started no run: its time shows it (START_S more)
            NO_RUN[0] += 1
        await p.wait_for_function(IDLE_JS, timeout=timeout * 1000, polling=50)
        self.seen = await p.evaluate("window.__stStarts || 0")
        await self.check()

    async def failed(self, e: Exception) -> None:
        """A failed cycle, counted with the exceptions seen, with a screenshot of what the page showed (in
        test-artifacts/, named in the line): the bench goes on with the next cycle."""
        line = f"{self.name}: {type(e).__name__}: {str(e)[:160]}"
        try:
            SHOTS.mkdir(exist_ok=True)
            path = SHOTS / f"classroom-{self.name}-{len(self.errors)}.png"
            await self.page.screenshot(path=str(path), full_page=True, timeout=30_000)
            line += f" (its page, {self.page.url}: {path})"
        except Exception:  # noqa: BLE001 -- a page too stuck for a screenshot: the line alone
            pass
        self.errors.append(line)

    async def check(self) -> None:
        p = self.page
        n = await p.locator("[data-testid='stException']").count() + await p.get_by_text("Something went wrong").count()
        if n:
            self.errors.append(f"{self.name}: {n} exception box(es) on {p.url}")

    async def nav(self, title: str) -> None:
        await self.page.locator("[data-testid='stSidebarNav'] a, [data-testid='stNavLink']").filter(
            has_text=title).first.click()
        await self.idle()

    async def choose(self, label: str, option: str) -> None:
        """Pick `option` in a selectbox. A click on the open list can miss while a loaded browser is still
        placing it (the box keeps its value and no run starts: the probe waited START_S for one); the box
        is read back at once and the pick made again, as a student would, before waiting for the run."""
        box = self.page.locator("[data-testid='stSelectbox']").filter(has_text=label).first
        combo = box.locator("input[role='combobox']")
        for _ in range(PICKS):
            await box.click()
            await self.page.get_by_role("option", name=option, exact=True).click()
            try:
                await combo.and_(self.page.locator("[aria-expanded='false']")).wait_for(timeout=PICKED_S * 1000)
            except Exception:  # noqa: BLE001 -- the list still open: close it, pick again
                await self.page.keyboard.press("Escape")
            else:
                if await combo.input_value() == option:
                    break
            REPICKS[0] += 1
        else:
            raise RuntimeError(f"{label}: {option} not picked in {PICKS} tries (it shows {await combo.input_value()!r})")
        await self.idle()

    async def slide(self, label: str, option: str, names: list[str]) -> None:
        """A select_slider set to `option` in one change, as a click on its track does (one script run);
        the keys finish the move if the click landed an option off. `names`: its options, in order; an
        option it lacks is an error."""
        s = self.page.locator("[data-testid='stSlider']").filter(has_text=label).first
        thumb = s.locator("input[type='range']")
        if (await thumb.get_attribute("aria-valuetext")) == option:
            return
        if option not in names:
            raise ValueError(f"{label} has no option {option!r} (it has {', '.join(names)})")
        i, track = names.index(option), await s.locator("[role='group'] > div[data-orientation]").bounding_box()
        if track is None:
            raise RuntimeError(f"the {label} slider is not on the page")
        was = await thumb.get_attribute("aria-valuetext")
        await self.page.mouse.click(track["x"] + track["width"] * i / max(len(names) - 1, 1),
                                    track["y"] + track["height"] / 2)
        try:  # the thumb moves at once where the click changed the value; where it did not, no run starts
            await self.page.wait_for_function("([el, was]) => el.getAttribute('aria-valuetext') !== was",
                                              arg=[await thumb.element_handle(), was], timeout=PICKED_S * 1000)
        except Exception:  # noqa: BLE001 -- the click landed on the option it was on: the keys move it
            pass
        else:
            await self.idle()
        now = names.index(await thumb.get_attribute("aria-valuetext"))
        if now != i:
            await thumb.focus()
            for _ in range(abs(i - now)):
                await thumb.press("ArrowRight" if i > now else "ArrowLeft")
            await self.idle()

    async def untrained(self) -> None:
        """Explore on the Architect's network (untrained), not the shipped example it opens on."""
        radio = self.page.locator("[data-testid='stRadio']").filter(has_text="Untrained").first
        if not await radio.get_by_role("radio", name=UNTRAINED, exact=True).is_checked():
            await radio.get_by_text(UNTRAINED, exact=True).click()
            await self.idle()

    async def upload(self, data: bytes, name: str = "photo.jpg") -> None:
        radio = self.page.locator("[data-testid='stRadio']").filter(has_text="Test set").first
        if not await radio.get_by_role("radio", name="Upload", exact=True).is_checked():
            await radio.get_by_text("Upload", exact=True).click()
            await self.idle()
        await self.page.locator("input[type='file']").first.set_input_files(
            files=[{"name": name, "mimeType": "image/jpeg", "buffer": data}])
        await self.idle()


async def timed(times: dict, key: str, coro) -> None:
    t = time.perf_counter()
    await coro
    times.setdefault(key, []).append(time.perf_counter() - t)


def _uploads(times: dict, photos: tuple[bytes, bytes]) -> tuple[bytes, str]:
    """The probe's next photo: the two in turn, so that each upload is a new file (the same file again
    changes nothing, and no script runs)."""
    n = len(times.get("explore: upload a photo", []))
    return photos[n % 2], f"photo-{n}.jpg"


async def probe_cycle(s: Student, times: dict, photo: tuple[bytes, bytes]) -> None:
    """Architect preset switch, Explore upload, three layer changes — on d2l's network, in the browser."""
    await s.nav("Architect")
    await timed(times, "architect: preset switch", s.choose("Preset", "mini28"))
    await timed(times, "architect: preset switch", s.choose("Preset", "d2l"))
    await s.nav("Explore")
    await s.untrained()
    await timed(times, "explore: upload a photo", s.upload(*_uploads(times, photo)))
    for layer in LAYERS:
        await timed(times, "explore: layer change", s.slide("Layer", layer, d2l_layers()))


async def server_cycle(s: Session, times: dict, photo: tuple[bytes, bytes]) -> None:
    """The probe's cycle over the websocket: the same script runs, timed from the request to the server's
    "finished", nothing drawn (the server's share of what the browser probe waits for). The upload is timed
    from the Upload choice, as the browser's is."""
    await s.nav("Architect")
    await timed(times, "architect: preset switch", s.choose("Preset", "mini28"))
    await timed(times, "architect: preset switch", s.choose("Preset", "d2l"))
    await s.nav("Explore")
    await s.choose("Model", UNTRAINED)

    async def upload() -> None:
        await s.choose("Image", "Upload")
        await s.upload(*_uploads(times, photo))
    await timed(times, "explore: upload a photo", upload())
    for layer in LAYERS:
        await timed(times, "explore: layer change", s.slide("Layer", layer))


LOOPS = [0]  # the classmates' loops done, in the class's process (the class's load on the server)


async def _looping(s: Session, stop: asyncio.Event, step, pause: float) -> None:
    """`step()` again and again until the bench stops the class; a failure is counted (with the session's
    name) and the loop goes on, as a student would reload: a slow page is the bench's finding, not its end."""
    while not stop.is_set():
        try:
            await step()
        except Exception as e:  # noqa: BLE001
            if not stop.is_set():
                s.errors.append(f"{s.name}: {type(e).__name__}: {str(e)[:160]}")
        await asyncio.sleep(pause() if callable(pause) else pause)


async def classmate(s: Session, stop: asyncio.Event, photo: bytes, seed: int) -> None:
    """The probe's cycle with a random preset and layer: Architect, Explore on its network, an upload, a layer."""
    rng = np.random.default_rng(seed)

    async def step() -> None:
        await s.nav("Architect")
        await s.choose("Preset", str(rng.choice(("mini28", "lenet5", "d2l"))))
        await s.nav("Explore")
        await s.choose("Model", UNTRAINED)
        await s.choose("Image", "Upload")
        await s.upload(photo)
        await s.slide("Layer", str(rng.choice(s.widgets["Layer"][1].options)))
        LOOPS[0] += 1
    await _looping(s, stop, step, lambda: float(rng.uniform(2, 5)))


async def trainer(s: Session, stop: asyncio.Event, paused: asyncio.Event) -> None:
    """Trains mini28 on the Train page and watches it (its live parts rerun on their timers); starts another
    run when one has finished, unless paused."""
    await s.nav("Train")
    await s.choose("Network", "A preset")
    await s.choose("Preset", "mini28")

    async def step() -> None:
        _, start = s.widgets["Start training"]
        if not paused.is_set() and not s.fragments and not start.disabled:  # no live part: no run going
            await s.click("Start training")
    await _looping(s, stop, step, 1.0)


async def hostile(s: Session, stop: asyncio.Event) -> None:
    """48 MP photos into the largest network the Architect allows (alexnet2012 at its largest input), opened
    in Explore; the largest batch on the Train page."""
    big = _photo(8000, 6000, quality=70)

    async def step() -> None:
        await s.nav("Architect")
        await s.choose("Preset", "alexnet2012")
        await s.number("Input size (px)", s.widgets["Input size (px)"][1].max)
        await s.nav("Explore")
        await s.choose("Model", UNTRAINED)
        await s.choose("Image", "Upload")
        await s.upload(big, "phone.jpg")
        if "Layer" in s.widgets:
            await s.slide("Layer", s.widgets["Layer"][1].options[-1])
        await s.nav("Train")
        await s.number("Batch size", s.widgets["Batch size"][1].max)
    await _looping(s, stop, step, 1.0)


async def _class(url: str, classmates: int) -> None:
    """The class, in a process of its own (its scheduler group at nice CLASS_GROUP_NICE), each student a
    session over the app's websocket (bench/wire.py): the server does for them all that it does for a
    browser, and nothing is drawn on the probe's browser core. Commands on stdin, one a line: "trainers",
    "pause", "resume", "mates", "hostile", "count", "stop"; it answers each with "ok N" (N: the classmates'
    loops done so far) and, after "stop", "errors " + the JSON list of what went wrong."""
    errors: list[str] = []
    photo = _photo(640, 480)
    stop, paused = asyncio.Event(), asyncio.Event()
    tasks: list[asyncio.Task] = []
    sessions: list[Session] = []
    trainers = min(TRAINERS, classmates)
    loop = asyncio.get_running_loop()
    _lower_autogroup(os.getpid(), include_self=True)

    async def join(name: str, body) -> None:
        s = Session(url, name, errors)
        await s.open()
        sessions.append(s)
        tasks.append(asyncio.create_task(body(s)))

    while True:
        command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if command == "trainers":
            for i in range(trainers):
                await join(f"trainer{i}", lambda s: trainer(s, stop, paused))
        elif command == "pause":
            paused.set()
        elif command == "resume":
            paused.clear()
        elif command == "mates":
            for i in range(max(classmates - trainers, 0)):
                await join(f"mate{i}", lambda s, i=i: classmate(s, stop, photo, i))
        elif command == "hostile":
            await join("hostile", lambda s: hostile(s, stop))
        elif command in ("stop", ""):  # "": the bench has gone
            stop.set()
            if tasks:
                await asyncio.wait(tasks, timeout=120)
            for s in sessions:
                await s.close()
            print("errors " + json.dumps(errors), flush=True)
            return
        print(f"ok {LOOPS[0]}", flush=True)


def _lower_autogroup(pid: int, nice: int = CLASS_GROUP_NICE, include_self: bool = False) -> None:
    """`nice` for the scheduler group of pid (and of its descendants). With Linux's autogroup scheduling each
    session (setsid) is a group that gets an equal share of the core whatever its processes' nice: the class
    at nice 19 would still take half of the browser core from the probe's. Writing /proc/PID/autogroup sets
    the group's own nice."""
    for p in [pid] * include_self + _descendants(pid):
        try:
            Path(f"/proc/{p}/autogroup").write_text(str(nice))
        except OSError:  # no autogroup scheduling here (nice alone then does it), or the process is gone
            pass


def class_process(url: str, classmates: int) -> None:
    """Entry point of the class's process (see _class)."""
    asyncio.run(_class(url, classmates))


BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync"]


class Class:
    """The bench's handle on the class's process: start it on the browser cores in a session (so a scheduler
    group) of its own, send commands."""

    async def start(self, url: str, classmates: int, cpus: set[int]) -> None:
        def low() -> None:
            os.sched_setaffinity(0, cpus)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", f"from alexnet_viz.bench.classroom import class_process; "
                                  f"class_process({url!r}, {classmates})",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, preexec_fn=low,
            cwd=str(APP.parent), start_new_session=True)  # its own scheduler group, lowered in _class

    async def send(self, command: str) -> str:
        self.proc.stdin.write(f"{command}\n".encode())
        await self.proc.stdin.drain()
        while True:
            line = (await self.proc.stdout.readline()).decode()
            if not line:
                raise RuntimeError(f"the class's process ended before answering {command!r}")
            if line.startswith(("ok", "errors ")):
                return line.strip()

    def cpu(self) -> float:
        return _cpu_seconds(self.proc.pid)

    async def count(self) -> int:
        """The classmates' loops done so far."""
        return int((await self.send("count")).split()[1])

    async def stop(self) -> list[str]:
        line = await self.send("stop")
        await self.proc.wait()
        return json.loads(line.removeprefix("errors "))


async def _phases(url: str, server: Server, classmates: int, seconds: float, browser_cpus: set[int],
                  work: Path, baseline) -> dict:
    """The phases in order; `baseline()` (the CLI's rate) is measured right after the watching phase,
    the trainers paused and their run ended, so that it and the watched run are minutes apart. In each of
    alone, class and hostile the probe's cycles run in the browser for `seconds`, then over the websocket
    (the server's answer alone) for half as long."""
    from playwright.async_api import async_playwright
    errors: list[str] = []
    photo = _photo(640, 480)
    photo = (photo, _photo(640, 480, quality=89))
    out = {"errors": errors, "server_busy": {}, "loops_per_min": {}}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        _pin_browsers(browser_cpus)
        probe = Student(browser, url, "probe", errors)
        await probe.open("explore")  # not the Architect, where the cycle's first step goes (no run: no change)
        await probe_cycle(probe, {}, photo)  # warm: models built, caches filled, as for a class in session
        wire = Session(url, "probe (server)", errors)
        await wire.open()
        await server_cycle(wire, {}, photo)

        async def run_probe(label: str, cls: Class | None = None) -> None:
            n0 = await cls.count() if cls else 0
            c0, k0, t0 = server.cpu(), cls.cpu() if cls else 0, time.time()
            for key, cycle, who, span in ((label, probe_cycle, probe, seconds),
                                          (f"{label}: server", server_cycle, wire, seconds / 2)):
                times: dict = {}
                end = time.time() + span
                while time.time() < end:
                    try:
                        await cycle(who, times, photo)
                    except Exception as e:  # noqa: BLE001 -- the probe's failure is a finding: counted, then on
                        await who.failed(e) if isinstance(who, Student) else errors.append(f"{who.name}: {e}")
                out[key] = times
            out["server_busy"][label] = (server.cpu() - c0) / (time.time() - t0)
            if cls:
                out["loops_per_min"][label] = (await cls.count() - n0) / ((time.time() - t0) / 60)
                out.setdefault("class_busy", {})[label] = (cls.cpu() - k0) / (time.time() - t0)

        await run_probe("alone")

        cls = Class()
        await cls.start(url, classmates, browser_cpus)
        try:
            await cls.send("trainers")
            rates = RunRates(server.runs)
            await rates.training(180)  # the first run past its warm-up (the data loaded, the precision measured)
            rates.mark()
            c0, t0 = server.cpu(), time.time()
            await asyncio.sleep(seconds)
            out["watch_cpu_per_session_min"] = (server.cpu() - c0) / max(min(TRAINERS, classmates), 1) / ((time.time() - t0) / 60)
            out["watched_rate"] = rates.steady_rate()
            await cls.send("pause")
            await rates.ended(120)
            out["cli_beside"] = await asyncio.to_thread(baseline)
            await cls.send("resume")
            await cls.send("mates")
            await run_probe("class", cls)
            await cls.send("hostile")
            await run_probe("hostile", cls)
        finally:
            errors += await cls.stop()
            await wire.close()
        await browser.close()
    return out


def _pin_browsers(cpus: set[int]) -> None:
    """Chromium's processes (all of them, renderers included) onto the browser cores."""
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if "chrom" in (p / "comm").read_text():
                    os.sched_setaffinity(int(p.name), cpus)
            except OSError:
                pass


def _p(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def main(quick: bool = False, classmates: int = 8) -> int:
    if not Path(CHROMIUM).exists():
        print(f"bench classroom needs Chromium at {CHROMIUM} (apt-get install -y chromium)")
        return 1
    if not APP.exists():
        print(f"bench classroom runs the app from a checkout: {APP} not found")
        return 1
    from alexnet_viz.cost.budget import memory_budget
    server_cpus, browser_cpus = _cpu_split()
    seconds = 25 if quick else 75
    data, data_words = bench_data()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # the CLI's speed drifts by up to 50% over a quarter of an hour on a shared machine: measured
        # before the server starts and again right after the watching phase, the server idle
        before = cli_rate(work, server_cpus, data, "before")
        everyone = os.sched_getaffinity(0)
        # this process and what it starts (Playwright's driver, Chromium, the server's memory sampler: a
        # thread keeps the affinity of the thread that started it) off the server's core
        os.sched_setaffinity(0, browser_cpus)
        server = Server(work, server_cpus, data)
        budget = memory_budget()
        try:
            out = asyncio.run(_phases(server.url, server, classmates, seconds, browser_cpus, work,
                                      lambda: cli_rate(work, server_cpus, data, "beside")))
        except Exception as e:  # noqa: BLE001 -- the server gone, or a phase that could not go on: say which
            died = server.proc.poll()
            print(f"bench classroom stopped: {type(e).__name__}: {str(e)[:300]}"
                  + (f"; the server had ended with status {died}" if died is not None else ""))
            return 1
        finally:
            server.close()
            os.sched_setaffinity(0, everyone)
            SHOTS.mkdir(exist_ok=True)  # the server's log (with a fault's Python traceback) outlives the run
            (SHOTS / "classroom-streamlit.log").write_bytes((work / "streamlit.log").read_bytes())
    cli = [before, out["cli_beside"]]
    pin = (f"server on core {sorted(server_cpus)}, the probe's browser and the class on {sorted(browser_cpus)} "
           f"(the class at group nice {CLASS_GROUP_NICE})"
           if server_cpus != browser_cpus else "one core: server and browsers share it")
    for where, words in (("", "in the browser (what the student waits for)"),
                         (": server", "over the websocket, nothing drawn (the server's answer alone)")):
        rows = []
        for key in sorted(out["alone" + where]):
            alone = out["alone" + where][key]
            row = [key, f"{_p(alone, .5):.2f} / {_p(alone, .95):.2f} s ({len(alone)})"]
            for phase in ("class", "hostile"):
                xs = out[phase + where].get(key, [])
                row.append(f"{_p(xs, .5):.2f} / {_p(xs, .95):.2f} s ({len(xs)}), p95 {_p(xs, .95) / _p(alone, .95):.1f}×"
                           if xs else "—")
            rows.append(row)
        print_table(f"classroom: the probe's p50 / p95 per interaction (count) {words}; {classmates} classmates; {pin}",
                    ["interaction", "probe alone", f"with {classmates} classmates", "and a hostile session"], rows)
    w, base = out["watched_rate"], statistics.mean(cli)
    print_table(f"classroom: the server; training on {data_words}", ["figure", "measured", "baseline in the same run"], [
        ["server CPU s per watching session per minute", f"{out['watch_cpu_per_session_min']:.2f} s", "—"],
        ["watched run, examples/s (its steps while two sessions watched)", f"{w:,.0f}",
         f"the CLI on the same core, before the server and after watching: {cli[0]:,.0f}, {cli[1]:,.0f} "
         f"({w / base:.0%} of their mean)"],
        ["server core busy (its CPU s per s) with the class, and the hostile session",
         " / ".join(f"{out['server_busy'][k]:.0%}" for k in ("class", "hostile")),
         f"the probe alone: {out['server_busy']['alone']:.0%}"],
        ["the classmates' loops (a preset, an upload, a layer: 7 script runs) per minute, with the class / the hostile session",
         " / ".join(f"{out['loops_per_min'][k]:.1f}" for k in ("class", "hostile")), "—"],
        ["the class's own CPU s per s on the browser core (its websocket sessions), with the class / the hostile session",
         " / ".join(f"{out['class_busy'][k]:.0%}" for k in ("class", "hostile")), "—"],
        ["exceptions seen", str(len(out["errors"])), "0"],
        ["the probe's selectbox picks made again (a click on the open list that missed; its time counts)",
         str(REPICKS[0]), "—"],
        ["the probe's actions that showed no script run within START_S (counted with that wait)",
         str(NO_RUN[0]), "—"],
        ["server peak memory (with its training processes)", f"{server.peak_rss / 2**30:.2f} GB",
         f"budget {budget / 2**30:.2f} GB"],
    ])
    for e in out["errors"][:20]:
        print("  ", e)
    return 0
