"""Nova's own virtual environment: pinned, kept apart from the project's, reused.

The venv is built once with ``python3 -m venv`` and ``pip install`` of
:data:`PINS`. A marker file inside it records the pins and the Python that
built it; a venv whose marker matches is reused as it is, anything else (no
marker, other pins, other Python, a half-finished install) is rebuilt from
scratch. A file lock keeps two test sessions from building it at once.
"""

import fcntl
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.novabox.errors import HarnessUnavailable

PINS: tuple[str, ...] = (
    "nova==34.0.0",
    "openstack-placement==16.0.0",
    "gunicorn==27.0.1",
    "PyMySQL==1.2.4",
    "psycopg2-binary==2.9.13",
    # Nova's test fixtures (the Glance and Neutron stand-ins) import these.
    "testtools==2.9.1",
    "wsgi-intercept==1.13.1",
)
"""What Nova's venv holds. Nova and Placement are pinned exactly: the box
leans on Nova's test fixtures, which are not a stable API."""

MARKER = "novabox-pins.json"
SMOKE_IMPORTS = "import nova, placement, gunicorn, pymysql, psycopg2, nova.tests"


@dataclass(frozen=True)
class NovaVenv:
    """A ready Nova venv."""

    path: Path
    built: bool
    """True when this call built it, False when an existing one was reused."""
    seconds: float
    """Time spent making it ready."""

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def command(self, name: str) -> str:
        """Absolute path of a console script of the venv (nova-manage, gunicorn...)."""
        return str(self.bin / name)

    @property
    def site_packages(self) -> Path:
        return next(self.path.glob("lib/python3*/site-packages"))


def ensure_venv(
    path: Path, *, python: str = "python3", log: Callable[[str], None] = print
) -> NovaVenv:
    """Return a ready Nova venv at ``path``, building it if needed.

    Raises :class:`HarnessUnavailable` when it cannot be built (no Python
    venv module, no network to the package index, ...), with pip's output.
    """
    started = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_name(path.name + ".lock")):
        wanted = _marker_content(python)
        if _read_marker(path) == wanted and (path / "bin" / "nova-manage").exists():
            return NovaVenv(path, built=False, seconds=time.monotonic() - started)
        log(f"novabox: building Nova's venv at {path} ({', '.join(PINS)})")
        _build(path, python, wanted)
        seconds = time.monotonic() - started
        log(f"novabox: Nova's venv ready in {seconds:.0f}s")
        return NovaVenv(path, built=True, seconds=seconds)


def _build(path: Path, python: str, marker: dict[str, object]) -> None:
    if path.exists():
        shutil.rmtree(path)
    _run([python, "-m", "venv", str(path)], "create the venv")
    pip = [str(path / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "--quiet", *PINS], "install Nova and Placement")
    _run([str(path / "bin" / "python"), "-c", SMOKE_IMPORTS], "import the installed Nova")
    (path / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        relevant = [line for line in output if not line.startswith("WARNING: Location")]
        tail = "\n".join(relevant[-25:])
        raise HarnessUnavailable(
            f"cannot {what} ({' '.join(argv[:4])} ... exited {result.returncode}):\n{tail}"
        )


def _marker_content(python: str) -> dict[str, object]:
    try:
        version = subprocess.run(
            [python, "-c", "import sys; print(sys.version.split()[0])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise HarnessUnavailable(
            f"cannot build Nova's venv: {python!r} does not run: {exc}"
        ) from exc
    return {"pins": list(PINS), "python": version}


def _read_marker(path: Path) -> dict[str, object] | None:
    try:
        content = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
