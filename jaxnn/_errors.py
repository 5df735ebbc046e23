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


class CorruptCheckpointError(CheckpointError):
  """A checkpoint whose data no longer matches the digest written with it."""


class StorageError(JaxnnError):
  """A file could not be written or read: full disk, read-only or missing directory."""


_OS_ADVICE = {
  "ENOSPC": "free some space or use another --out, then rerun: completed checkpoints are kept",
  "EDQUOT": "free some space or use another --out, then rerun: completed checkpoints are kept",
  "EROFS": "use a writable directory",
  "EACCES": "use a directory you may write to, or change its permissions",
  "EPERM": "use a directory you may write to, or change its permissions",
  "ENOENT": "check the path",
  "ENOTDIR": "a part of the path is a file, not a directory: check the path",
  "EISDIR": "a directory is where a file should be: check the path",
  "EEXIST": "move the existing file away or choose another path",
  "EMFILE": "too many open files: raise the limit (ulimit -n) and rerun",
  "EIO": "the storage failed: check the disk, then rerun",
}
_OS_MESSAGES = {  # what storage libraries (tensorstore) write instead of an errno
  "No space left on device": "ENOSPC",
  "Disk quota exceeded": "EDQUOT",
  "Read-only file system": "EROFS",
  "Permission denied": "EACCES",
}


def describe_os_error(e: BaseException, path: object = None) -> str | None:
  """One line for a filesystem error: what failed, where, and what to do.

  Looks through `e`, its causes and (for storage libraries that only keep the
  text) its message for an `OSError`'s errno. `path` replaces the error's own
  file name. Returns None if there is none.
  """
  import errno as errno_lib
  import os

  seen = set()
  error: BaseException | None = e
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno:
      code = errno_lib.errorcode.get(error.errno, "")
      where = f": {path or error.filename}" if path or error.filename else ""
      advice = _OS_ADVICE.get(code)
      what = error.strerror or os.strerror(error.errno)
      return f"{what}{where}" + (f"; {advice}" if advice else "")
    error = error.__cause__ or error.__context__
  text = str(e)
  for message, code in _OS_MESSAGES.items():
    if message in text:
      return f"{message}; {_OS_ADVICE[code]}"
  return None
