"""Every configuration example in the documentation loads as the daemon loads it.

Each ```ini block of docs/*.md is the daemon's configuration, unless its first
line is a comment naming ``nova.conf`` (Nova's own, shown for Nova's
set-up). It is written to a file and loaded with the daemon's settings, which
refuse an unknown option of nova-autopilot's groups; then every option the
block sets, oslo.messaging's included, is read, so a value that does not
convert (a typo, or an inline comment, which oslo.config keeps as part of the
value) fails here instead of on an operator's host.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from oslo_config import cfg

from nova_autopilot import settings
from nova_autopilot.bus.connection import register_oslo_options

DOCS = Path(__file__).resolve().parents[2] / "docs"
_FENCE = re.compile(r"^```ini[^\n]*\n(.*?)^```", re.M | re.S)


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def novas(self) -> bool:
        first = self.text.lstrip().splitlines()[0] if self.text.strip() else ""
        return first.startswith(("#", ";")) and "nova.conf" in first


def ini_blocks() -> list[Block]:
    found = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            found.append(Block(page.name, text.count("\n", 0, match.start()) + 1, match.group(1)))
    return found


BLOCKS = [block for block in ini_blocks() if not block.novas]


def values_of(text: str) -> list[tuple[str, str, str]]:
    """(group, option, value) of every option the block sets, values as written."""
    parser = configparser.ConfigParser(
        interpolation=None, strict=False, comment_prefixes=("#", ";"), inline_comment_prefixes=()
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    found = [("DEFAULT", name, value) for name, value in parser.defaults().items()]
    for section in parser.sections():
        own = parser._sections[section]  # type: ignore[attr-defined]
        found.extend((section, name, value) for name, value in own.items())
    return found


def options_of(text: str) -> list[tuple[str, str]]:
    return [(group, name) for group, name, _ in values_of(text)]


def test_the_set_up_pages_show_the_daemons_configuration() -> None:
    pages = {block.page for block in BLOCKS}
    assert {"installation.md", "nova-setup.md", "broker.md"} <= pages
    assert any(block.novas for block in ini_blocks())


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_every_configuration_example_loads(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "nova-autopilot.conf"
    path.write_text(block.text, encoding="utf-8")
    try:
        conf = settings.load(config_files=[str(path)], config_dirs=[])
        register_oslo_options(conf)
        for group, name in options_of(block.text):
            getattr(conf if group == "DEFAULT" else conf[group], name)
    except (settings.SettingsError, cfg.Error, ValueError) as exc:
        pytest.fail(f"{block}: the example does not load: {type(exc).__name__}: {exc}")
    for group, name, value in values_of(block.text):
        assert not re.search(r"(^|\s)[#;]", value), (
            f"{block}: [{group}] {name} has an inline comment, which becomes part of its value"
        )


def test_an_inline_comment_is_seen_as_part_of_the_value() -> None:
    found = values_of("[DEFAULT]\nstate_dir = /srv  # here\n[journal]\nconnection =   # empty\n")
    assert [v for _, _, v in found] == ["/srv  # here", "# empty"]


def test_an_inline_comment_would_be_caught(tmp_path: Path) -> None:
    path = tmp_path / "nova-autopilot.conf"
    path.write_text("[notifications]\nexchange = nova   # Nova's\n", encoding="utf-8")
    with pytest.raises(settings.SettingsError, match="exchange"):
        settings.load(config_files=[str(path)], config_dirs=[])
