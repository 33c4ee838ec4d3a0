from alexnet_viz.ui import lessons
from alexnet_viz.ui.common import guarded

guarded(lessons.page)()
