"""File writes that survive a full disk: atomic replacement, and one clear error.

A write that fails for lack of space (ENOSPC) becomes a `DiskFull` error whose
one-line message names the path and the free space left on its file system
(`shutil.disk_usage`); the half-written file is removed and the file it would
have replaced stays as it was. Orbax writes arrays through tensorstore, which
reports ENOSPC as a `ValueError` whose text carries the OS error, so both
forms are recognised.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Dict, Iterator

from mjxmbrl.types import MjxmbrlError


class DiskFull(MjxmbrlError):
    """A write failed for lack of space; what was written before is kept."""


def _format_bytes(n: int) -> str:
    """`1536` -> '1.5 KiB'; whole bytes below 1 KiB."""
    size, unit = float(n), "B"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, larger
    return f"{int(n)} B" if unit == "B" else f"{size:.1f} {unit}"


def free_space(path: str | Path) -> str:
    """The free space on the file system of `path` (or of its nearest existing parent), e.g. '292.0 KiB'."""
    path = Path(path).absolute()
    for candidate in (path, *path.parents):
        with contextlib.suppress(OSError):
            return _format_bytes(shutil.disk_usage(candidate).free)
    return "unknown"


def is_disk_full(err: BaseException) -> bool:
    """True when `err`, or an exception it was raised from, reports ENOSPC."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return True
        text = str(err)
        if f"os_error_code='{errno.ENOSPC}'" in text or os.strerror(errno.ENOSPC) in text:
            return True
        err = err.__cause__ or err.__context__
    return False


def disk_full_error(path: str | Path, what: str = "") -> DiskFull:
    """DiskFull('no space left on device writing <what> <path> (<free> free)')."""
    what = f"{what} " if what else ""
    return DiskFull(f"no space left on device writing {what}{path} ({free_space(path)} free)")


@contextlib.contextmanager
def disk_full_as_error(path: str | Path, what: str = "") -> Iterator[None]:
    """Turns an ENOSPC raised inside the block into `disk_full_error(path, what)`; other errors pass."""
    try:
        yield
    except Exception as err:
        if is_disk_full(err):
            raise disk_full_error(path, what) from None
        raise


def atomic_write(path: str | Path, data: bytes) -> None:
    """Replaces `path` by `data` atomically; see `atomic_write_all`."""
    atomic_write_all({Path(path): data})


def atomic_write_all(files: Dict[Path, bytes]) -> None:
    """Writes every {path: data} to a temporary file (fsync), then renames them all into place.

    Renaming takes no space, so a full disk fails before any file is replaced:
    the temporary files are removed, every `path` keeps its old contents, and
    ENOSPC raises `DiskFull` naming the file that did not fit.
    """
    tmps = {Path(path): Path(path).with_name(f".{Path(path).name}.tmp-{os.getpid()}") for path in files}
    try:
        for path, data in files.items():
            with disk_full_as_error(path):
                with open(tmps[Path(path)], "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
        for path, tmp in tmps.items():
            os.replace(tmp, path)
    finally:
        for tmp in tmps.values():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
