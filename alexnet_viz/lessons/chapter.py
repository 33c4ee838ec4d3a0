"""The lessons: d2l's AlexNet chapter in steps. Predict, then see.

Each step has two or three sentences, a view of the app it is about ("Show me", a link built with
alexnet_viz.links, so it is the very state a shared link opens), a question answered before the
answer shows (a choice or a number), and the answer computed by lessons/answers.py. A learner's
progress (the step, each answer, the stride picked) is a set of query parameters, so a reload or a
shared link keeps it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlencode

from alexnet_viz import links
from alexnet_viz.config import PRESETS, with_conv
from alexnet_viz.lessons import answers
from alexnet_viz.lessons.answers import Finding
from alexnet_viz.training.experiments import EXPERIMENTS

STRIDES = (1, 2, 3, 4, 5, 6, 8)   # what the learner may pick for conv1 (d2l's is 4)
NUMBER_MAX = 1e7                  # the largest number a numeric answer may be (a ratio of 10^7 is absurd)

# The parameters other pages read from their URL (issue 17, part 2), for the views the lessons open:
# the Experiments page's "exp" (ui/train_links.py; written here without its default, so it is explicit).
EXPERIMENTS_VIEW = {"exp": links.choice(EXPERIMENTS), **links.PRESENTER}
EXPLORE_VIEW = {"run": links.text(), "snapshot": links.text(), "layer": links.text(), **links.PRESENTER}


@dataclass(frozen=True)
class Context:
    """What the answers read besides the presets: the runs this learner sees, the shipped trained run."""
    runs: list = field(default_factory=list)   # RunInfo of the learner's and the shipped runs
    example: object = None                     # runs.examples.example_run(): a Run, or None
    stride: int = 4                            # the conv1 stride the learner picked


@dataclass(frozen=True)
class View:
    page: str      # the page's url path ("" = the Architect, the default page)
    query: dict    # its query parameters, from links.write

    @property
    def href(self) -> str:
        """Relative to the app's address, so it works wherever the app is served."""
        return f"./{self.page}" + (f"?{urlencode(self.query)}" if self.query else "")


def architect(cfg) -> View:
    return View("", links.write(links.architect_values(cfg), links.ARCHITECT))


@dataclass(frozen=True)
class LessonStep:
    key: str                                  # short id
    title: str
    text: str                                 # two or three sentences (markdown)
    question: str
    answer: Callable[[Context], Finding]      # computed every time, never typed in
    view: Callable[[Context], View]           # what "Show me" opens
    options: tuple[tuple[str, str], ...] = ()  # (value, label) for a choice; () = a number
    correct: Callable[[Finding], object] = lambda f: f.value  # the value an answer is judged against
    exact: bool = False                       # a number that must be exact (a size), else within 25 %

    @property
    def kind(self) -> str:
        return "choice" if self.options else "number"


def _memory_bucket(f: Finding) -> str | None:
    if f.value is None:
        return None
    r = f.value
    return "same" if r < 1.5 else "2x" if r < 3 else "4x" if r <= 5 else "more"


def _layer_options() -> tuple[tuple[str, str], ...]:
    return tuple((n, n) for n in answers.conv_layer_names())


def _d2l(_ctx: Context) -> View:
    return architect(PRESETS[answers.ALEXNET])


STEPS: tuple[LessonStep, ...] = (
    LessonStep("ratio", "AlexNet against LeNet",
         "In 2012 AlexNet won ImageNet with the same ingredients as LeNet-5 (1998) — convolutions, pooling, a "
         "classifier — only much bigger. d2l's chapter says it has about 10× the parameters and 260× the "
         "compute. The app counts both networks layer by layer.",
         "How many times more parameters does the app count for AlexNet (d2l's, for Fashion-MNIST) than for LeNet-5?",
         lambda ctx: answers.ratios(), _d2l),
    LessonStep("params", "Where the parameters are",
         "A layer's parameters are its weights and biases: a conv has out × in × k × k of them, a Linear layer "
         "in × out. The chapter's exercise asks which layer holds the most.",
         "Which layer of AlexNet holds the most parameters?",
         lambda ctx: answers.heaviest("params"), _d2l, options=_layer_options()),
    LessonStep("macs", "Where the compute is",
         "A conv's weights are used again at every position of its output map, a Linear layer's only once. "
         "So the layer with the most weights need not be the one that computes the most.",
         "Which layer of AlexNet needs the most multiply-accumulates per image?",
         lambda ctx: answers.heaviest("macs"), _d2l, options=_layer_options()),
    LessonStep("stride", "conv1's output size",
         "conv1 slides 96 filters of 11×11 over the 224×224 image (padded by 1). Its stride, the step between "
         "two positions, sets how many positions fit — and so the size of every map after it. Pick a stride.",
         "How many pixels wide is conv1's output with the stride you picked?",
         lambda ctx: answers.conv1_side(ctx.stride),
         lambda ctx: architect(with_conv(PRESETS[answers.ALEXNET], 0, stride=ctx.stride)), exact=True),
    LessonStep("memory", "Memory of training",
         "Training keeps every layer's output for the backward pass, for every image of the batch, beside the "
         "weights, their gradients and the process itself. d2l trains at batch 128.",
         "Training at batch 512 instead of 128 (4× the images per step) needs how much more memory?",
         lambda ctx: answers.training_memory(128, 512), _d2l,
         options=(("same", "about the same (under 1.5×)"), ("2x", "between 1.5× and 3×"),
                  ("4x", "about 4× (3× to 5×)"), ("more", "more than 5×")), correct=_memory_bucket),
    LessonStep("relu", "ReLU against sigmoid",
         "LeNet squashed every value with a sigmoid; AlexNet used ReLU, max(0, x). The experiment trains the "
         "same network both ways, with the same budget and seeds.",
         "After the same short training, which reaches the higher test accuracy?",
         lambda ctx: answers.relu_vs_sigmoid(ctx.runs),
         lambda ctx: View("experiments", links.write({"exp": "relu-vs-sigmoid"}, EXPERIMENTS_VIEW)),
         options=(("ReLU", "ReLU"), ("sigmoid", "sigmoid"), ("about the same", "about the same (within seed noise)"))),
    LessonStep("filters", "conv1's filters, before and after",
         "Before training, conv1's filters are random numbers. Training changes them to whatever helps tell "
         "the classes apart. The shipped network kept a snapshot from before its first step.",
         "After training, what do conv1's filters look like?",
         lambda ctx: answers.conv1_filters(ctx.example),
         lambda ctx: View("explore", links.write({"run": "mini28", "snapshot": "before training", "layer": "conv1"},
                                                 EXPLORE_VIEW)),
         options=(("noise", "still much like random noise"), ("smooth", "smoother patterns: strokes, edges, blobs"))),
    LessonStep("field", "How far a unit sees",
         "A conv1 unit sees an 11×11 patch of the image. A unit of the next conv sees a patch of conv1's "
         "outputs, each of which sees its own patch — so the window grows with depth (the table's receptive "
         "field column).",
         "How many input pixels wide is the patch that one conv5 unit of AlexNet sees?",
         lambda ctx: answers.receptive_growth(), _d2l, exact=True),
    LessonStep("dropout", "Dropout and the gap",
         "A network can learn its training images by heart: high training accuracy, lower test accuracy. "
         "AlexNet added dropout to its fully connected layers against this. The experiment trains with and "
         "without it.",
         "Without dropout, is the gap between training and test accuracy larger or smaller?",
         lambda ctx: answers.dropout_gap(ctx.runs, ctx.example),
         lambda ctx: View("experiments", links.write({"exp": "dropout"}, EXPERIMENTS_VIEW)),
         options=(("larger", "larger"), ("smaller or the same", "smaller or the same"))),
)


def _answer_param(step: LessonStep) -> links.Param:
    if step.kind == "choice":
        return links.choice([v for v, _ in step.options])
    return links.number(0, NUMBER_MAX)


# The Lessons page's URL: the step (1-based), the stride picked, each answer given, the presenter's reveal.
SCHEMA: dict[str, links.Param] = {
    "lesson": links.integer(1, len(STEPS), default=1),
    "stride": links.choice([str(s) for s in STRIDES], default="4"),
    **{f"a_{s.key}": _answer_param(s) for s in STEPS},
    "reveal": links.flag(),
    **links.PRESENTER,
}


@dataclass(frozen=True)
class Verdict:
    right: bool
    words: str     # "Right.", "Close: ...", "Not quite: ..."


def judge(step: LessonStep, finding: Finding, given) -> Verdict | None:
    """How the learner's answer compares with the computed one; None when the data is missing."""
    target = step.correct(finding)
    if finding.missing is not None or target is None or given is None:
        return None
    if step.kind == "choice":
        label = dict(step.options).get(target, str(target))
        return Verdict(True, "Right.") if given == target else Verdict(False, f"Not quite: the app says {label}.")
    given, target = float(given), float(target)
    if given == target or (not step.exact and abs(given - target) <= 0.25 * abs(target)):
        return Verdict(True, "Right." if given == target or step.exact else f"Right, near enough to {target:,.0f}.")
    if abs(given - target) <= 0.1 * abs(target) or (step.exact and abs(given - target) <= 1):
        return Verdict(False, f"Close: it is {target:,.0f}.")
    times = max(given, target) / max(min(given, target), 1e-12)
    side = "low" if given < target else "high"
    return Verdict(False, f"Not quite: it is {target:,.0f} — your answer is {times:,.1f}× too {side}.")


__all__ = ["STEPS", "SCHEMA", "STRIDES", "LessonStep", "View", "Context", "Verdict", "judge", "EXPERIMENTS_VIEW",
           "EXPLORE_VIEW"]
