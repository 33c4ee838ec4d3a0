"""Files in the runs folder as a shared server must treat them: safe reads, atomic writes.

Reading: anyone may drop anything into the runs folder. A FIFO in place of a file would block a
plain `read_text()` forever, a symlink to /dev/zero would read until memory runs out, a directory
or a device in place of a file must not surprise a page. So a file is opened without following a
symlink and without blocking, checked with fstat to be a regular file, and read up to a limit
(or, for logs, its last part only). An array file (.npy) is believed only where its header's
shape and type add up to the bytes the file holds: a header may claim any size, and numpy
allocates what it claims before reading (a 40-byte file claiming 200 GB is a MemoryError).

Writing: a reader never sees half a file. `write_atomic` writes a temp file beside the target,
closes it (so a full disk on the last flush is an error, not a silently short file) and renames it
into place; a write that fails leaves the old file, and no temp file.
"""
from __future__ import annotations

import errno
import io
import math
import os
import shutil
import stat
import threading
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from alexnet_viz.units import MB, megabytes

DISK_NEARLY_FULL = 64 * MB  # free space under which a failed write is taken for a full disk


class BadFile(OSError):
    """A file that is not a regular file, or larger than its limit; the message says which and why."""


def open_regular(path: Path, limit: int) -> io.BufferedReader:
    """A regular file open for reading in binary; BadFile for anything else or a file over `limit`."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if os.path.islink(path):
            raise BadFile(f"{path.name} is a symbolic link, not a file") from None
        raise e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadFile(f"{path.name} is not a regular file ({_file_kind(st.st_mode)})")
        if st.st_size > limit:
            raise BadFile(f"{path.name} is {megabytes(st.st_size)}, more than the {megabytes(limit)} "
                          f"such a file may have")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_capped(path: Path, limit: int, tail: bool = False) -> bytes:
    """A regular file's bytes, at most `limit` of them. With `tail`, a longer file gives its last
    `limit` bytes from the start of a line (a log's newest records); without, BadFile."""
    try:
        f = open_regular(path, limit if not tail else 1 << 62)
    except BadFile:
        raise
    with f:
        size = os.fstat(f.fileno()).st_size
        if tail and size > limit:
            f.seek(size - limit)
            data = f.read(limit)
            return data[data.find(b"\n") + 1:]  # the first line was cut: drop it
        data = f.read(limit + 1)  # a file still growing is cut at the limit too
    if len(data) > limit:
        raise BadFile(f"{Path(path).name} grew past {megabytes(limit)} while being read")
    return data


def read_text(path: Path, limit: int, tail: bool = False) -> str:
    """read_capped, decoded as UTF-8; BadFile when it is not UTF-8 text."""
    data = read_capped(path, limit, tail)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadFile(f"{Path(path).name} is not UTF-8 text (byte {e.start})") from None


def read_npy(path: Path, limit: int) -> np.ndarray:
    """A .npy file's array (a regular file of at most `limit` bytes); BadFile when it is not one, holds
    objects (pickles), or its header claims more or fewer bytes than follow it."""
    data = read_capped(path, limit)
    name = Path(path).name
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
    except (ValueError, TypeError, EOFError, SyntaxError) as e:
        raise BadFile(f"{name} is not a numpy array file ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None
    if dtype.hasobject:
        raise BadFile(f"{name} holds Python objects, not numbers")
    count = math.prod(shape)
    claimed, held = count * dtype.itemsize, len(data) - f.tell()
    if claimed != held:
        raise BadFile(f"{name}'s header claims {megabytes(claimed)} of {dtype} but the file holds "
                      f"{megabytes(held)} — it is damaged")
    a = np.frombuffer(data, dtype, count=count, offset=f.tell())
    return a.reshape(shape, order="F" if fortran else "C").copy()


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def write_atomic(path: Path, data: bytes | str | Callable[[BinaryIO], object]) -> None:
    """Write `data` to `path` all at once: bytes, text (UTF-8), or a function that writes into the
    open binary file it is given (`lambda f: torch.save(state, f)`). The temp file is closed before
    the rename, so an error on its last flush raises here; a failed write removes the temp file and
    raises OSError (ENOSPC when the disk is full), the old file left as it was."""
    path = Path(path)
    # one temp name per process and thread: two writers of the same cache file never share one
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        # torch.save reports a full disk as RuntimeError ("[enforce fail at inline_container.cc] ...")
        if isinstance(e, RuntimeError) and shutil.disk_usage(path.parent).free < DISK_NEARLY_FULL:
            raise OSError(errno.ENOSPC, "disk full") from None
        raise
