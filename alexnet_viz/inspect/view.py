"""Explore's view as a link: the parameters it keeps in the URL (alexnet_viz.links schema), and the
link's names (a run, a snapshot, an example image) matched against what exists here.

A link carries names, never paths or images: a run by its folder name (looked up among the run
folders, never joined onto a path), an example image by its file name, a test image by its index.
An uploaded image stays with its owner: the link says only that the view was of an upload.
"""
from __future__ import annotations

from dataclasses import dataclass

from alexnet_viz import links
from alexnet_viz.inspect.attribution import METHODS
from alexnet_viz.inspect.choice import Source, is_example_run

IMAGES = {"upload": "Upload", "camera": "Camera", "test": "Test set", "example": "Example"}  # link name: radio label
SIDE_MAX = 4096       # rows, columns and channels a link may name (the page checks them against the layer)

SCHEMA: links.Schema = {
    "model": links.choice([s.value for s in Source]),
    "run": links.text(),                 # a run folder's name (one's own, a shipped one, or one shared by link)
    "snapshot": links.text(),            # a snapshot's label ("before training", "epoch 1" ...)
    "image": links.choice(IMAGES),
    "test": links.integer(0, 10**7),     # the test image's index
    "example": links.text(),             # the example image's file name
    "layer": links.text(),
    "channel": links.integer(0, SIDE_MAX),
    "row": links.integer(0, SIDE_MAX),
    "col": links.integer(0, SIDE_MAX),
    "cam": links.text(),                 # the Grad-CAM layer
    "cls": links.integer(0, 100_000),    # the Grad-CAM class by its index (the predicted one when absent)
    "method": links.choice(METHODS),     # the attribution method looked at closer
    **links.PRESENTER,
}


@dataclass(frozen=True)
class LinkedModel:
    """Where a link's model and run point here; `missing` names what the link asked for but is not here."""
    source: Source | None
    run: object = None          # a RunInfo, for RUN and EXAMPLE
    missing: tuple[str, ...] = ()


def find_model(values: dict, runs: list) -> LinkedModel:
    """The model a link names, among `runs` (every run folder here, shipped ones marked `example`):
    `run` alone is the run of that name (a shipped one is the example), `model` alone its source."""
    source = Source(values["model"]) if "model" in values else None
    name = values.get("run")
    if name is None or source in (Source.UNTRAINED, Source.IMAGENET):
        return LinkedModel(source)
    match = [r for r in runs if r.name == name and r.state != "damaged"]
    if source is not None:
        match = [r for r in match if is_example_run(r) == (source is Source.EXAMPLE)]
    if not match:
        return LinkedModel(None, None, ("run",))
    r = match[0]
    return LinkedModel(Source.EXAMPLE if is_example_run(r) else Source.RUN, r)


def image_values(source_label: str, test_index: int | None, example: str | None) -> dict:
    """The link's image parameters for the radio's choice: the index or name where it has one."""
    name = next(k for k, v in IMAGES.items() if v == source_label)
    return {"image": name, "test": test_index if name == "test" else None,
            "example": example if name == "example" else None}
