from alexnet_viz.ui import experiments
from alexnet_viz.ui.common import guarded

guarded(experiments.page)()
