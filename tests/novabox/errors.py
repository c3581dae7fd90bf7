"""The harness's exceptions."""


class NovaBoxError(Exception):
    """Something in the box went wrong."""


class HarnessUnavailable(NovaBoxError):
    """The harness cannot be installed or started on this machine at all.

    Only this error lets the test fixture skip (outside CI); every other error
    is a failure.
    """


class ServiceFailed(NovaBoxError):
    """A service of the box exited, or did not become ready in time.

    The message carries the tail of the service's log.
    """


class CommandFailed(NovaBoxError):
    """A set-up command (nova-manage, rabbitmqctl, ...) exited non-zero."""

    def __init__(self, argv: list[str], returncode: int, output: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-30:])
        super().__init__(f"{' '.join(argv)} exited {returncode}:\n{tail}")


class TeardownIncomplete(NovaBoxError):
    """Stopping the box left something behind."""
