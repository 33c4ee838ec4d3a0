from alexnet_viz.ui import explore
from alexnet_viz.ui.common import guarded

guarded(explore.page)()
