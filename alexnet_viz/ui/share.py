"""A page's state in the address bar, and "Share this view": the link and a QR code for a projector.

The rules of a link (what a parameter accepts, how a network is packed) live in alexnet_viz.links;
this module only moves them between `st.query_params` and the page.
"""
from __future__ import annotations

import io
from urllib.parse import urlencode, urlsplit, urlunsplit

import streamlit as st

from alexnet_viz import links

FRAGMENT = "share"  # the popover's fragment: a part of a page that changes the URL without a full run reruns it too
QR_PX = 480        # the QR code's side on screen: readable from the back of a classroom on a projector
_WRITTEN = "_share_written"   # per page: the parameters sync_url last put into the URL


def _page_key(schema: links.Schema) -> str:
    return "|".join(sorted(schema))


def _url_params() -> dict[str, list[str]]:
    return {k: st.query_params.get_all(k) for k in st.query_params}


def _own(params: dict, schema: links.Schema) -> dict:
    return {k: v for k, v in params.items() if k in schema}


def restore(schema: links.Schema) -> dict:
    """The values a link gives this page, read once per visit (when the URL is not what this page last
    wrote: a link just opened, or a return from another page); {} otherwise. One notice names the
    parameters it ignored."""
    ss = st.session_state
    key = _page_key(schema)
    written = ss.setdefault(_WRITTEN, {})
    now = _own(_url_params(), schema)
    if key in written and now == {k: [v] for k, v in written[key].items()}:
        return {}
    values, ignored = links.read(now, schema)
    written[key] = {k: st.query_params[k] for k in now}  # read once: later runs see it as already written
    if ignored:
        names = ", ".join(ignored)
        st.warning(f"Part of this link was ignored: {names} (malformed, out of range or not accepted here). "
                   f"The page shows its own defaults for {'it' if len(ignored) == 1 else 'them'}.", icon="🔗")
    return values


def sync_url(values: dict, schema: links.Schema) -> None:
    """Make the URL carry exactly this page's state (and the session id), so copying it shares the view."""
    ss = st.session_state
    want = links.write(values, schema)
    keep = {k: st.query_params[k] for k in links.GLOBAL if k in st.query_params}
    ss.setdefault(_WRITTEN, {})[_page_key(schema)] = want
    if st.query_params.to_dict() != {**keep, **want} or any(len(v) > 1 for v in _url_params().values()):
        st.query_params.from_dict({**keep, **want})


def base_url() -> str:
    """This page's address as the browser has it; the server's own address when the browser has not said."""
    url = st.context.url
    if url:
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))
    host = st.get_option("browser.serverAddress") or "localhost"
    return f"http://{host}:{st.get_option('server.port')}/"


def share_link() -> str:
    """The link to this view: the page's address and its parameters, never the session id."""
    q = {k: v for k, v in st.query_params.to_dict().items() if k not in links.GLOBAL}
    return base_url() + (f"?{urlencode(q)}" if q else "")


@st.cache_data(max_entries=32)
def qr_png(text: str) -> bytes:
    """A black-on-white QR code of text, drawn at least QR_PX pixels wide with whole-pixel modules."""
    import segno
    qr = segno.make(text, error="m")
    side = qr.symbol_size(scale=1, border=4)[0]
    buf = io.BytesIO()
    qr.save(buf, kind="png", scale=max(1, -(-QR_PX // side)), border=4, dark="#000000", light="#ffffff")
    return buf.getvalue()


@st.fragment(key=FRAGMENT)
def share_ui() -> str:
    """'Share this view': the full link to copy, and a QR code a class can scan off the projector. A
    fragment, so that a part of the page that reruns by itself (Explore's layer and unit) can redraw the link
    with it (`st.rerun(scope=[that part, FRAGMENT])` from its widgets)."""
    link = share_link()
    with st.popover("Share this view", icon=":material/share:"):
        st.markdown("Anyone who opens this link sees this page as it is now (uploaded images stay with you).")
        st.code(link, language=None, wrap_lines=True)
        st.image(qr_png(link), width=QR_PX, caption="Scan to open this view")
        host = urlsplit(link).hostname or ""
        if host in ("localhost", "127.0.0.1", "::1"):
            st.caption("This address only works on this computer: on other devices use this computer's network "
                       "address instead of localhost (the same port).")
    return link
