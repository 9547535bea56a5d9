"""Exceptions a user sees: one sentence each, no traceback needed to understand them."""


class InvalidSpec(ValueError):
    """A name, size, CIDR or count the user gave is not allowed (one sentence)."""


class CloudError(Exception):
    """A failed cloud operation, explained in one sentence."""


class Unsupported(CloudError):
    """The provider lacks a capability; the message names the provider and what it lacks."""


class NotFound(CloudError, LookupError):
    """The named resource does not exist."""


class AlreadyExists(CloudError):
    """A resource with that name exists already."""


class NotManaged(CloudError):
    """A libvirt object without nbcloud's metadata mark: nbcloud never touches it."""


class HostError(CloudError):
    """The host (daemon, namespace, packages) is not ready; the message says how to fix it."""


class SSHError(CloudError):
    """SSH to an instance failed (unreachable, host key mismatch, command failed)."""

    def __init__(self, message: str, *, returncode: int | None = None,
                 stdout: str = "", stderr: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class Interrupted(KeyboardInterrupt):
    """A wait the user interrupted (Ctrl-C, a kernel interrupt); the message says what was
    left running and what was not made. A KeyboardInterrupt, so scripts still stop."""


class NoCapacity(CloudError):
    """No host of the cloud has room for what was asked; the message says what is short."""


class HostDown(HostError):
    """A host of the cloud does not answer: what lives there is lost until it is back."""
