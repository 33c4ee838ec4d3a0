from alexnet_viz.ui import train
from alexnet_viz.ui.common import guarded

guarded(train.page)()
