"""The shell commands of the README and of docs/*.md, as a reader would type them.

A command comes from a fenced block: ```sh blocks hold commands (``#`` starts
a comment), ```console blocks hold commands after a ``$ `` prompt and their
output, and an unmarked ``` block holds commands when each of its lines starts
with ``nova-autopilot``. A line ending in ``\\`` or ``|`` goes on on the next
line, and a here-document (``<<'EOF'``) belongs to the command that opens it.

``nova-autopilot`` commands are often synopses (``history [--since WHEN]``,
``breaker reset --policy NAME | --global | --all``): :func:`variants` turns a
synopsis into the concrete command lines it stands for, with its placeholders
(upper-case words) replaced.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = (ROOT / "README.md", *sorted(DOCS.glob("*.md")))

_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.M | re.S)
_HEADING = re.compile(r"^(#{1,6}) (.+)$", re.M)
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")
#: Words that run the command after them (``sudo -u USER env VAR=x nova-autopilot ...``).
_WRAPPERS = {"sudo", "env", "exec"}


@dataclass(frozen=True)
class Command:
    """One command of a page: where it is, and its text as bash would read it."""

    page: str
    line: int
    text: str
    section: str
    block: int  # the index of its block in the page

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def words(self) -> list[str]:
        """The command's words, comments and line continuations gone (no here-document)."""
        first = self.text
        if _HEREDOC.search(first):  # the here-document's lines are its input, not words
            first = first[: first.index("\n", _HEREDOC.search(first).end())]
        joined = re.sub(r"\\\n", " ", first)
        lexer = shlex.shlex(joined, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        return list(lexer)

    @property
    def program(self) -> str:
        """What runs: the first word after variable assignments and wrappers (sudo -u X env)."""
        return _program(self.words)

    def pipeline(self) -> list[list[str]]:
        """The command's words split at ``|``, ``&&``, ``;`` (one list per program run),
        without redirections (``> file``, ``<< EOF``)."""
        parts: list[list[str]] = [[]]
        words = iter(self.words)
        for word in words:
            if word in ("|", "||", "&&", ";", "&"):
                parts.append([])
            elif word in (">", ">>", "<", "<<", "2>", "&>"):
                next(words, None)
            else:
                parts[-1].append(word)
        return [part for part in parts if part]


def synopsis_and_pipe(command: Command) -> tuple[list[str], str]:
    """The words of the command's first program, and the shell text of the rest of its
    pipeline ("" without one). A ``|`` before an option is a synopsis's alternative
    (``--policy NAME | --global``), not a pipe."""
    words, rest = command.words, ""
    depth = 0
    for i, word in enumerate(words):
        depth += word.startswith("[") - word.endswith("]")
        if depth > 0 or word not in ("|", "&&", ";"):
            continue
        if i + 1 < len(words) and not words[i + 1].startswith("-"):
            after = re.search(r"(\||&&|;)\s*" + re.escape(words[i + 1]), command.text)
            words, rest = words[:i], command.text[after.start() :] if after else ""
            break
    first: list[str] = []
    redirections = iter(words)
    for word in redirections:  # `> week.csv` goes with the rest, for the shell
        if word in (">", ">>", "<"):
            rest = f"{word} {shlex.quote(next(redirections, ''))} {rest}".strip()
        else:
            first.append(word)
    return first, rest


def program_at(words: list[str]) -> int:
    """Where the program of ``words`` is, after variable assignments and wrappers."""
    i = 0
    while i < len(words):
        word = words[i]
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word) or word in ("(", "{"):
            i += 1
        elif word in _WRAPPERS:
            i += 1
            while i < len(words) and words[i].startswith("-"):
                i += 2 if words[i] in ("-u", "-g") else 1
        else:
            return i
    return len(words)


def _program(words: list[str]) -> str:
    at = program_at(words)
    if at == len(words):
        return ""
    word = words[at]
    return Path(word).name if "/bin/" in word else word


def _section_at(text: str, offset: int) -> str:
    """The heading the text at ``offset`` is under (a ``#`` line inside a block is none)."""
    heading = ""
    for found in _HEADING.finditer(text, 0, offset):
        if text.count("\n```", 0, found.start()) % 2 == 0:
            heading = found.group(2).strip()
    return heading


def _logical_lines(lines: list[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each command: continuations and here-documents joined."""
    i = 0
    while i < len(lines):
        number, line = lines[i]
        parts = [line]
        while i + 1 < len(lines) and (
            parts[-1].rstrip().endswith(("\\", "|"))
            or re.match(r"\s+\[", lines[i + 1][1])  # a synopsis that goes on, indented
        ):
            i += 1
            parts.append(lines[i][1])
        text = "\n".join(parts)
        heredoc = _HEREDOC.search(text)
        if heredoc:
            end = heredoc.group(2)
            body = []
            while i + 1 < len(lines):
                i += 1
                body.append(lines[i][1])
                if lines[i][1].strip() == end:
                    break
            text = text + "\n" + "\n".join(body)
        i += 1
        if text.strip() and not text.lstrip().startswith("#"):
            yield number, text


def page_commands(page: Path) -> list[Command]:
    """Every command of one page, in order."""
    text = page.read_text(encoding="utf-8")
    found: list[Command] = []
    for index, block in enumerate(_FENCE.finditer(text)):
        kind, body = block.group(1), block.group(2)
        start = text.count("\n", 0, block.start()) + 2  # the block's first line
        lines = list(enumerate(body.splitlines(), start))
        if kind == "console":
            commands, current = [], None
            for number, line in lines:
                if line.startswith("$ "):
                    current = [(number, line[2:])]
                    commands.append(current)
                elif current is not None and current[-1][1].rstrip().endswith("\\"):
                    current.append((number, line))
                else:
                    current = None
            selected = [entry for command in commands for entry in command]
        elif kind == "sh" or (
            kind == ""
            and lines
            and all(line.startswith("nova-autopilot ") for _, line in lines if line.strip())
        ):
            selected = lines
        else:
            continue
        section = _section_at(text, block.start())
        for number, command in _logical_lines(selected):
            found.append(Command(page.name, number, command, section, index))
    return found


def all_commands() -> list[Command]:
    return [command for page in PAGES for command in page_commands(page)]


# -- synopses ---------------------------------------------------------------------------

#: What a placeholder of a synopsis stands for, when nothing more specific is given.
PLACEHOLDERS: Mapping[str, str] = {
    "N": "5",
    "WHEN": "2h",
    "SECONDS": "30",
}
_TOKEN = re.compile(r"\[|\]|\||'[^']*'|\"[^\"]*\"|[^\s\[\]|]+")


def _alternatives(tokens: list[str]) -> list[list[str]]:
    """``a --x X | --y | --z`` -> [a --x X], [a --y], [a --z]: alternatives of the last option."""
    chunks: list[list[str]] = [[]]
    depth = 0
    for token in tokens:
        depth += token == "["
        depth -= token == "]"
        if token == "|" and depth == 0:
            chunks.append([])
        else:
            chunks[-1].append(token)
    if len(chunks) == 1:
        return chunks
    first = chunks[0]
    cut = max(i for i, token in enumerate(first) if token.startswith("-"))
    return [first, *([*first[:cut], *chunk] for chunk in chunks[1:])]


def _optional(tokens: list[str], include: bool) -> list[str]:
    """The tokens with every ``[...]`` group dropped, or kept without its brackets (and
    of a group's alternatives, ``[-f table|json]``, the first)."""
    out: list[str] = []
    depth = 0
    skipping: int | None = None  # the depth of a group whose other alternatives are left out
    for token in tokens:
        if token == "[":
            depth += 1
        elif token == "]":
            skipping = None if skipping == depth else skipping
            depth -= 1
        elif skipping is not None:
            continue
        elif token == "|" and depth > 0:
            skipping = depth
        elif include or depth == 0:
            out.append(token)
    return out


def variants(synopsis: str, values: Mapping[str, str] | None = None) -> list[list[str]]:
    """The command lines a synopsis stands for: without its optional parts and with all
    of them, for each alternative; upper-case placeholders replaced from ``values``
    (else :data:`PLACEHOLDERS`, else ``x``)."""
    given = {**PLACEHOLDERS, **(values or {})}
    tokens = _TOKEN.findall(synopsis)
    lines: list[list[str]] = []
    for alternative in _alternatives(tokens):
        for include in (False, True):
            words = []
            for token in _optional(alternative, include):
                if token == "...":
                    continue
                if re.fullmatch(r"[A-Z][A-Z_]*(-[A-Z]+)*", token):  # NAME, SERVER-UUID
                    token = given.get(token, "x")
                words.append(shlex.split(token)[0] if token[:1] in "'\"" else token)
            if words not in lines:
                lines.append(words)
    return lines


# -- who tries each command -------------------------------------------------------------

#: The tests that try the commands, by what they need.
OFFLINE = "tests/docs/test_commands.py (run here, no service)"
PARSED = "tests/docs/test_commands.py (parsed and checked: it acts on a host or a real cloud)"
LOCAL = "tests/docs/test_local.py (docs/local.md, run as written)"
LIVE = "tests/docs/test_live.py (a daemon on RabbitMQ and the sandbox)"
BROKER = "tests/docs/test_live.py (RabbitMQ, a vhost and users of the test's own)"
SANDBOX = "tests/docs/test_live.py (the sandbox's command line and HTTP interface)"
TAP = "tests/docs/test_live.py (the troubleshooting page's tap, replay and explain)"

#: nova-autopilot commands that need no daemon, broker or cloud.
_OFFLINE_COMMANDS = ("check", "explain", "replay", "--version")
#: ... and those that need a real cloud of their own (the demo's --cloud).
_CLOUD_COMMANDS = ("demo",)


def nova_autopilot_args(words: list[str]) -> list[str]:
    """The arguments of the ``nova-autopilot`` in ``words`` (a pipeline's part)."""
    at = program_at(words)
    if _program(words) != "nova-autopilot":
        raise ValueError(f"no nova-autopilot in {words}")
    return words[at + 1 :]


def subcommand(args: list[str]) -> str:
    """The command of ``nova-autopilot`` arguments (``--version`` for that option)."""
    i = 0
    while i < len(args):
        if args[i] in ("--config-file", "--config-dir"):
            i += 2
        elif args[i] == "--version" or not args[i].startswith("-"):
            return args[i]
        else:
            i += 1
    return ""


def tried_by(command: Command) -> str:
    """Which test tries ``command``, and how."""
    program = command.program
    if command.page == "local.md":
        return LOCAL
    if command.page == "troubleshooting.md" and command.section == "Tap Nova's notifications":
        return TAP
    if program == "rabbitmqctl":
        return BROKER
    if program == "curl" or (program == "python" and "nova_autopilot.sandbox" in command.text):
        return SANDBOX
    if program == "nova-autopilot":
        name = subcommand(nova_autopilot_args(command.pipeline()[0]))
        if name in _OFFLINE_COMMANDS:
            return OFFLINE if "/etc/" not in command.text else PARSED
        if name in _CLOUD_COMMANDS:
            return PARSED
        return LIVE
    if program == "journalctl" and "jq" in command.text:
        return LIVE  # the filter runs on the lines a running daemon logged
    if program == "python" and "nova_autopilot.journal.migrations" in command.text:
        return OFFLINE
    if command.page == "installation.md" and command.section == "The configuration files":
        return OFFLINE  # the keys and authorisation files it writes are loaded
    return PARSED


def commands_tried_by(how: str) -> list[Command]:
    return [command for command in all_commands() if tried_by(command) == how]
