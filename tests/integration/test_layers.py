"""The layer contracts of ``.importlinter`` hold on the tree, and fail on an upward import.

``make lint`` runs the same check; these tests show that it can fail: a copy of the
package with one import that goes up a layer (the journal importing the engine),
one that makes the simulated Nova depend on the package, and one that imports
openstacksdk outside ``cloud`` are each refused, naming the contract they break.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "nova_autopilot"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(source_root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the repository's contracts over the package under ``source_root``."""
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: install the package's test extra")
    return subprocess.run(
        [str(LINT_IMPORTS), str(ROOT / ".importlinter"), "--no-cache"],
        cwd=source_root,
        env={"PYTHONPATH": str(source_root), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def copy_with(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of the package whose ``module`` (a path under it) gains ``line``."""
    root = tmp_path / "src"
    shutil.copytree(PACKAGE, root / "nova_autopilot", ignore=shutil.ignore_patterns("__pycache__"))
    target = root / "nova_autopilot" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    return root


def test_the_tree_keeps_every_contract() -> None:
    result = lint(ROOT / "operator")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "journal/errors.py",
            "from nova_autopilot.engine import flow  # noqa",
            "Folders are layers: an import only goes down",
        ),
        (
            "engine/conduct.py",
            "from nova_autopilot.engine import holds  # noqa",
            "The decision flow calls only down",
        ),
        (
            "sandbox/clock.py",
            "from nova_autopilot import errors  # noqa",
            "The simulated Nova is self-contained",
        ),
        ("journal/store.py", "import openstack  # noqa", "Only cloud imports openstacksdk"),
    ],
)
def test_an_import_against_the_layers_fails_the_check(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    result = lint(copy_with(tmp_path, module, line))

    assert result.returncode != 0
    verdicts = " ".join(result.stdout.split())
    assert re.search(re.escape(contract) + r"[^.]*? BROKEN", verdicts), result.stdout
