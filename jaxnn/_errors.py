"""Errors a user can act on.

Every error raised for bad input (an unknown dataset, impossible
hyperparameters, a corrupt checkpoint, a NaN loss) is a `JaxnnError` whose
message says what to do. The CLI prints these as one line, without a traceback.
"""


class JaxnnError(Exception):
  """A user error: the message says what went wrong and what to do."""


class DatasetUnavailableError(JaxnnError):
  """A dataset that exists but cannot be had on this machine."""


class CheckpointError(JaxnnError):
  """A checkpoint that is corrupt or does not match the run."""


class NonFiniteLossError(JaxnnError):
  """Training produced a NaN or infinite loss."""
