"""What a server's serial console shows (``os-getConsoleOutput``).

A good boot ends at a login prompt; a failed boot shows a kernel panic (or
systemd's emergency shell); a rescued server shows the rescue image's login
prompt. A fault can replace the text with anything.
"""

from __future__ import annotations

_HEADER = (
    "[    0.000000] Linux version 6.1.0-sandbox (sandbox@build) (gcc 12.2.0) #1 SMP\n"
    "[    0.000000] Command line: BOOT_IMAGE=/vmlinuz root=LABEL=cloudimg-rootfs ro\n"
    "[    0.512345] Run /init as init process\n"
)


def console_log(kind: str, hostname: str) -> str:
    """A console log of ``kind``: ``ok``, ``panic``, ``emergency`` or ``rescue``."""
    if kind == "panic":
        return _HEADER + (
            '[    1.203040] VFS: Cannot open root device "LABEL=cloudimg-rootfs" or '
            "unknown-block(0,0): error -6\n"
            '[    1.203511] Please append a correct "root=" boot option\n'
            "[    1.204020] Kernel panic - not syncing: VFS: Unable to mount root fs on "
            "unknown-block(0,0)\n"
            "[    1.204530] ---[ end Kernel panic - not syncing: VFS: Unable to mount root fs "
            "on unknown-block(0,0) ]---\n"
        )
    if kind == "emergency":
        return _HEADER + (
            "[    2.310000] systemd[1]: Mounting /srv...\n"
            "[    2.420000] mount[311]: mount: /srv: wrong fs type, bad option, bad superblock "
            "on /dev/vdb1.\n"
            "[  OK  ] Reached target Emergency Mode.\n"
            'You are in emergency mode. After logging in, type "journalctl -xb" to view\n'
            'system logs, "systemctl reboot" to reboot, "systemctl default" or "exit"\n'
            "to boot into default mode.\n"
            "Give root password for maintenance\n"
            "(or press Control-D to continue):\n"
        )
    if kind == "rescue":
        return _HEADER + (
            "[    2.100000] systemd[1]: Booting the rescue image\n"
            "[  OK  ] Reached target Multi-User System.\n"
            f"{hostname}-rescue login:\n"
        )
    return _HEADER + (
        "[    2.100000] EXT4-fs (vda1): mounted filesystem with ordered data mode.\n"
        "[  OK  ] Reached target Multi-User System.\n"
        "[  OK  ] Finished cloud-init final stage.\n"
        f"{hostname} login:\n"
    )


def tail(output: str, length: int | None) -> str:
    """The last ``length`` lines, counted as Nova counts them (a final newline makes a line)."""
    if length is None:
        return output
    if length == 0:
        return ""
    return "\n".join(output.split("\n")[-length:])


KINDS = ("ok", "panic", "emergency", "rescue")


def render(kind_or_text: str, hostname: str) -> str:
    """A known kind as its log; anything else is shown as it is."""
    return console_log(kind_or_text, hostname) if kind_or_text in KINDS else kind_or_text
