"""Errors that the command line turns into exit codes."""


class UsageError(Exception):
    """Bad input from the user (file, flag, config value): exit code 2, one clear line.

    The message must name the input and say what is wrong with it.
    """


class TrialFailed(Exception):
    """A candidate could not be built, converted or measured; the trial fails, the study goes on."""


class DeviceUnavailable(Exception):
    """A device did not answer (or refused us): not the model's fault.

    A device pool takes that member out and retries elsewhere; a trial fails for
    this reason only when no member is left after waiting.
    """
