"""A Streamlit session without a browser: the app's own websocket protocol, spoken from Python.

bench classroom's classmates. A browser on this machine spends 4-5 CPU s laying out and drawing each page
(measured), so eight of them beside the probe's on one core finished no loop at all: the class loaded the
browser core, not the server. A `Session` asks the server for exactly what a browser asks (a script run per
widget change, with that widget's new value; page changes; uploads through the upload endpoint; the timed
reruns of the page's live parts, as the browser's timers send them) and reads every message back, but
draws nothing. What it cannot see is the browser's own time, which a student's laptop spends, not the server.
"""
from __future__ import annotations

import asyncio
import http.cookiejar
import time
import urllib.request
import uuid

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

WIDGETS = ("radio", "selectbox", "slider", "button", "file_uploader", "number_input", "checkbox")
FINISHED = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR,
            ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY}  # not FINISHED_EARLY_FOR_RERUN: another run follows
BROKEN = "Something went wrong"  # the pages' own line for an unexpected error (ui/common.guarded)


class WireError(RuntimeError):
    """The session could not do what it was asked (no such widget or option, the server closed it, a timeout)."""


class Session:
    """One session of the app at `url` (http://host:port), opened on page `path` ("" for the default page)."""

    def __init__(self, url: str, name: str, errors: list[str], timeout: float = 180):
        self.url, self.name, self.errors, self.timeout = url.rstrip("/"), name, errors, timeout
        self.widgets: dict[str, tuple[str, object]] = {}  # label -> (kind, proto), the first of that label
        self.pages: dict[str, str] = {}                    # page title -> its script hash
        self.query, self.page_hash = "", ""
        self.fragments: dict[str, float] = {}              # fragment id -> its auto-rerun interval, s
        self.session_id = ""
        self._seen: set[str] = set()                       # labels drawn so far in the run in progress
        self._media: list[str] = []                         # image URLs drawn, not yet fetched
        self.fetched = 0                                    # bytes of images fetched, as a browser does
        self.runs = 0                                       # script runs finished (whole page or a fragment)
        self._lock = asyncio.Lock()                         # one request at a time, as a browser's queue
        self._done: asyncio.Future | None = None
        self._uploads: dict[str, asyncio.Future] = {}

    # ---- connection ----

    async def open(self, path: str = "") -> None:
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        await asyncio.to_thread(lambda: opener.open(self.url + "/_stcore/health", timeout=30).read())
        self.xsrf = next((c.value for c in jar if c.name == "_streamlit_xsrf"), "")
        ws_url = "ws" + self.url.removeprefix("http") + "/_stcore/stream"
        self.ws = await websockets.connect(
            ws_url, subprotocols=["streamlit", self.xsrf] if self.xsrf else ["streamlit"],
            additional_headers={"Cookie": f"_streamlit_xsrf={self.xsrf}"} if self.xsrf else None,
            max_size=None, open_timeout=60, ping_interval=None)
        self._reader = asyncio.create_task(self._read())
        self._timers = asyncio.create_task(self._auto_reruns())
        await self._request(page_name=path)

    async def close(self) -> None:
        self._timers.cancel()
        await self.ws.close()
        self._reader.cancel()

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                msg = ForwardMsg()
                msg.ParseFromString(raw)
                self._take(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            for f in [self._done, *self._uploads.values()]:
                if f and not f.done():
                    f.set_exception(WireError(f"{self.name}: the server closed the session"))

    def _take(self, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self._seen = set()
            if msg.new_session.HasField("initialize"):
                self.session_id = msg.new_session.initialize.session_id
            if not msg.metadata.run.fragment_ids:  # a whole page's run: its widgets and timers are those it draws now
                self.widgets.clear()
                self.fragments.clear()
        elif kind == "navigation":
            self.pages = {p.page_name: p.page_script_hash for p in msg.navigation.app_pages}
            self.page_hash = msg.navigation.page_script_hash or self.page_hash
        elif kind == "page_info_changed":
            self.query = msg.page_info_changed.query_string
        elif kind == "auto_rerun":
            self.fragments[msg.auto_rerun.fragment_id] = msg.auto_rerun.interval
        elif kind == "stop_auto_rerun":  # the named live parts stop (none named: all of them)
            for fid in msg.stop_auto_rerun.fragment_ids or list(self.fragments):
                self.fragments.pop(fid, None)
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            self._element(msg.delta.new_element)
        elif kind == "file_urls_response":
            f = self._uploads.pop(msg.file_urls_response.response_id, None)
            if f and not f.done():
                f.set_result(msg.file_urls_response)
        elif kind == "script_finished" and msg.script_finished in FINISHED:
            self.runs += 1
            if self._done and not self._done.done():
                self._done.set_result(None)

    def _element(self, el) -> None:
        kind = el.WhichOneof("type")
        if kind == "exception":
            self.errors.append(f"{self.name}: an exception box ({el.exception.type}: {el.exception.message[:80]})")
        elif kind in ("alert", "markdown") and BROKEN in getattr(el, kind).body:
            self.errors.append(f"{self.name}: {getattr(el, kind).body[:120]}")
        elif kind == "imgs":  # a browser fetches each image from the server's media endpoint
            self._media += [i.url for i in el.imgs.imgs if i.url.startswith("/")]
        elif kind in WIDGETS:
            w = getattr(el, kind)
            if w.label not in self._seen:  # the first of a label in this run (a fragment's redraw replaces it)
                self._seen.add(w.label)
                self.widgets[w.label] = (kind, w)

    # ---- requests: one script run each, answered when it has finished ----

    async def _request(self, states: list | None = None, page_name: str = "", page_hash: str | None = None,
                       fragment: str = "") -> None:
        async with self._lock:
            if fragment and fragment not in self.fragments:  # the page that had it has been left meanwhile
                return
            msg = BackMsg()
            rerun = msg.rerun_script
            rerun.query_string = "" if page_hash is not None or page_name else self.query
            rerun.page_script_hash = self.page_hash if page_hash is None else page_hash
            rerun.page_name = page_name
            rerun.fragment_id = fragment
            rerun.is_auto_rerun = bool(fragment)
            rerun.widget_states.widgets.extend(states or [])
            self._done = asyncio.get_running_loop().create_future()
            await self.ws.send(msg.SerializeToString())
            try:
                await asyncio.wait_for(self._done, self.timeout)
            except asyncio.TimeoutError:
                raise WireError(f"{self.name}: no answer in {self.timeout:.0f} s") from None
            if page_hash is not None:
                self.page_hash = page_hash
            media, self._media = self._media, []
            if media:  # before the next run, which lets the server forget this run's images
                await asyncio.to_thread(self._fetch, media)

    async def _auto_reruns(self) -> None:
        """The page's live parts, rerun at their intervals while the session has nothing else running
        (a browser's timers do the same; its queue holds them behind a run in progress)."""
        due: dict[str, float] = {}
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            for fid, every in list(self.fragments.items()):
                if now >= due.setdefault(fid, now + every) and not self._lock.locked():
                    try:
                        await self._request(fragment=fid)
                    except WireError as e:
                        self.errors.append(str(e))
                        return
                    due[fid] = time.monotonic() + every
            for fid in set(due) - set(self.fragments):
                del due[fid]

    def _widget(self, label: str, kinds: tuple[str, ...]):
        kind, w = self.widgets.get(label, (None, None))
        if kind not in kinds:
            raise WireError(f"{self.name}: no {'/'.join(kinds)} {label!r} on the page "
                            f"(it has {', '.join(sorted(self.widgets)) or 'no widgets'})")
        return kind, w

    @staticmethod
    def _state(w, **value):
        from streamlit.proto.WidgetStates_pb2 import WidgetState
        s = WidgetState(id=w.id)
        for field, v in value.items():
            if field == "string_array_value":
                s.string_array_value.data.extend(v)
            else:
                setattr(s, field, v)
        return s

    # ---- what a student does ----

    async def nav(self, title: str) -> None:
        if title not in self.pages:
            raise WireError(f"{self.name}: no page {title!r} (there are {', '.join(self.pages)})")
        await self._request(page_hash=self.pages[title])

    async def choose(self, label: str, option: str) -> None:
        """A selectbox or a radio set to `option`."""
        _, w = self._widget(label, ("selectbox", "radio"))
        if option not in w.options:
            raise WireError(f"{self.name}: {label!r} has no option {option!r} (it has {', '.join(w.options)})")
        await self._request([self._state(w, string_value=option)])

    async def slide(self, label: str, option: str) -> None:
        """A select_slider set to `option`."""
        _, w = self._widget(label, ("slider",))
        if option not in w.options:
            raise WireError(f"{self.name}: {label!r} has no option {option!r} (it has {', '.join(w.options)})")
        await self._request([self._state(w, string_array_value=[option])])

    async def number(self, label: str, value: float) -> None:
        _, w = self._widget(label, ("number_input",))
        await self._request([self._state(w, double_value=float(value))] if w.data_type == w.FLOAT else
                            [self._state(w, int_value=int(value))])

    async def click(self, label: str) -> bool:
        """Press a button; False when it is disabled (nothing sent), as a browser would not send it."""
        _, w = self._widget(label, ("button",))
        if w.disabled:
            return False
        await self._request([self._state(w, trigger_value=True)])
        return True

    async def upload(self, data: bytes, name: str = "photo.jpg", mime: str = "image/jpeg",
                     label: str | None = None) -> None:
        """A file given to the uploader `label` (else the page's first), as the browser sends it: ask for an
        upload URL, PUT the file there, then one script run with the uploader's new state."""
        label = label or next((k for k, (kind, _) in self.widgets.items() if kind == "file_uploader"), "")
        _, w = self._widget(label, ("file_uploader",))
        msg, rid = BackMsg(), uuid.uuid4().hex
        msg.file_urls_request.request_id = rid
        msg.file_urls_request.session_id = self.session_id
        msg.file_urls_request.file_names.append(name)
        answer = self._uploads[rid] = asyncio.get_running_loop().create_future()
        await self.ws.send(msg.SerializeToString())
        urls = (await asyncio.wait_for(answer, self.timeout)).file_urls[0]
        await asyncio.to_thread(self._put, urls.upload_url, data, name, mime)
        s = self._state(w)
        info = s.file_uploader_state_value.uploaded_file_info.add()
        info.file_id, info.name, info.size = urls.file_id, name, len(data)
        info.file_urls.CopyFrom(urls)
        await self._request([s])

    def _fetch(self, paths: list[str]) -> None:
        for path in paths:
            try:
                self.fetched += len(urllib.request.urlopen(self.url + path, timeout=self.timeout).read())
            except OSError as e:  # an image the page drew but the server no longer has is a broken page
                self.errors.append(f"{self.name}: image {path}: {e}")

    def _put(self, path: str, data: bytes, name: str, mime: str) -> None:
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                f"Content-Type: {mime}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        url = path if path.startswith("http") else self.url + "/" + path.lstrip("/")
        req = urllib.request.Request(url, data=body, method="PUT", headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}", "X-Xsrftoken": self.xsrf,
            "Cookie": f"_streamlit_xsrf={self.xsrf}"})
        urllib.request.urlopen(req, timeout=self.timeout).read()
