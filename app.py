"""AlexNet Explorer: `streamlit run app.py`. The pages live in alexnet_viz/ui."""
import streamlit as st

from alexnet_viz.inspect.background import long_runs_yield
from alexnet_viz.ui import architect, experiments, explore, lessons, train
from alexnet_viz.ui.common import guarded

long_runs_yield()  # one machine serving a class: a script run past 0.25 CPU s yields the core to shorter ones

st.set_page_config(page_title="AlexNet Explorer", page_icon=":material/neurology:", layout="wide")
st.navigation([
    st.Page(guarded(architect.page), title="Architect", icon=":material/architecture:", default=True),
    st.Page(guarded(train.page), title="Train", icon=":material/monitoring:", url_path="train"),
    st.Page(guarded(explore.page), title="Explore", icon=":material/search:", url_path="explore"),
    st.Page(guarded(experiments.page), title="Experiments", icon=":material/science:", url_path="experiments"),
    st.Page(guarded(lessons.page), title="Lessons", icon=":material/school:", url_path="lessons"),
]).run()
