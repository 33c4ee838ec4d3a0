from alexnet_viz.ui import architect
from alexnet_viz.ui.common import guarded

guarded(architect.page)()
