"""A small filesystem of the test's own, which the test may fill up at will.

A test that needs the disk under the journal to be full must not fill a disk anything
else uses (the machine's /tmp, the tests' other files). It mounts this one instead:

* a tmpfs of ``size_mib`` MiB (``mount -t tmpfs -o size=...``) on a temporary
  directory of its own; as full as its size says, with no blocks kept for root (an
  ext4 keeps 5 % for root, which a daemon running as root would go on using);
* :meth:`SmallFilesystem.fill` writes a filler file until the filesystem refuses
  another byte (ENOSPC), and keeps it full (a thread tops the filler up every few
  milliseconds, should anything on it shrink) until :meth:`SmallFilesystem.free`
  deletes the filler: the space is back at once;
* :meth:`SmallFilesystem.close` (or leaving the ``with`` block, or the end of the
  ``small_filesystem`` fixture, also when the test failed) frees it, unmounts it
  (lazily, ``umount -l``, when a process the test could not stop still holds a file
  on it) and removes the directory.

Mounting needs root (CAP_SYS_ADMIN); without it, or without ``mount``, the tests that
need the filesystem are unavailable (skipped with a loud reason, failed in CI:
tests/unavailable.py)::

    with SmallFilesystem.mount(size_mib=64) as fs:   # or the fixture small_filesystem
        state_dir = fs.path / "state"
        fs.fill()                                    # the disk is full, and stays so
        fs.free()                                    # the space is back
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from tests.unavailable import unavailable

__all__ = ["SmallFilesystem", "small_filesystem"]

#: The size of the filesystem the fixture mounts, in MiB.
SIZE_MIB = 64
#: The name the mount shows as its source in /proc/mounts, to tell it from others.
SOURCE = "nova-autopilot-test-small-fs"
#: Seconds between two top-ups of the filler while the filesystem is held full.
TOP_UP_S = 0.005
#: The largest single write of the filler.
CHUNK = 1 << 20


class SmallFilesystem:
    """One mounted tmpfs (see the module's documentation)."""

    def __init__(self, path: Path, size_mib: int) -> None:
        self.path = path
        self.size_mib = size_mib
        self._filler = path / ".filler"
        self._fd: int | None = None
        self._held = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def mount(cls, *, size_mib: int = SIZE_MIB) -> SmallFilesystem:
        """A new tmpfs of ``size_mib`` MiB, mounted (unavailable() when this machine does
        not let the tests mount one)."""
        tool = shutil.which("mount")
        if tool is None:
            unavailable("SMALL FILESYSTEM UNAVAILABLE: no mount command to mount a tmpfs")
        path = Path(tempfile.mkdtemp(prefix="na-small-fs-"))
        done = subprocess.run(
            [tool, "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755", SOURCE, str(path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if done.returncode != 0 or not os.path.ismount(path):
            path.rmdir()
            unavailable(
                "SMALL FILESYSTEM UNAVAILABLE: mounting a tmpfs failed (it needs root with "
                f"CAP_SYS_ADMIN; euid {os.geteuid()}): {(done.stderr or done.stdout).strip()}"
            )
        return cls(path, size_mib)

    # -- filling it ---------------------------------------------------------------------

    def available(self) -> int:
        """Bytes a new write may still take."""
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def fill(self) -> int:
        """Write the filler until the filesystem is full, and keep it full until
        :meth:`free`; how many bytes the filler took."""
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            written = self._top_up()
            if self._thread is None:
                self._held.set()
                self._stop.clear()
                self._thread = threading.Thread(target=self._keep_full, name="fill", daemon=True)
                self._thread.start()
        return written

    def full(self) -> bool:
        """Whether the filler is held (between :meth:`fill` and :meth:`free`)."""
        return self._held.is_set()

    def free(self) -> int:
        """Stop holding the filesystem full and delete the filler; the bytes it freed.
        Safe to call when it is not full."""
        self._stop.set()
        self._held.clear()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            if self._fd is None:
                return 0
            size = os.fstat(self._fd).st_size
            os.close(self._fd)
            self._fd = None
            self._filler.unlink(missing_ok=True)
            return size

    def _top_up(self) -> int:
        """Append to the filler until not one byte more fits; the bytes written."""
        assert self._fd is not None
        written, chunk = 0, CHUNK
        block = b"\0" * CHUNK
        while chunk:
            try:
                written += os.write(self._fd, block[:chunk])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2  # the last pages: ever smaller writes, down to one byte
        return written

    def _keep_full(self) -> None:
        while not self._stop.wait(TOP_UP_S):
            with self._lock:
                if self._fd is not None and self.available():
                    self._top_up()

    # -- removing it --------------------------------------------------------------------

    def close(self) -> None:
        """Free it, unmount it (lazily if something still holds a file on it) and
        remove the directory. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self.free()
        finally:
            try:
                self._unmount()
            finally:
                with contextlib.suppress(OSError):
                    self.path.rmdir()

    def _unmount(self) -> None:
        if not os.path.ismount(self.path):
            return
        tool = shutil.which("umount") or "umount"
        done = subprocess.run(
            [tool, str(self.path)], capture_output=True, text=True, check=False, timeout=30
        )
        if done.returncode != 0:  # busy: a process the test could not stop holds a file
            subprocess.run(
                [tool, "-l", str(self.path)],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )

    def __enter__(self) -> SmallFilesystem:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@pytest.fixture
def small_filesystem() -> Iterator[SmallFilesystem]:
    """A mounted tmpfs of SIZE_MIB MiB for one test (see :class:`SmallFilesystem`); bind it
    in a module with ``small_filesystem = small_filesystem_module.small_filesystem``.
    Unmounted and its directory removed afterwards, whatever the test did."""
    with SmallFilesystem.mount() as fs:
        yield fs
