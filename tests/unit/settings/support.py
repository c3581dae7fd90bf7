"""What the settings tests share: configuration files written on the fly."""

from __future__ import annotations

from pathlib import Path


def write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)
