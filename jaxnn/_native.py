"""Building and registering C++ XLA FFI kernels, shared by the methods' CPU kernels.

A `NativeLibrary(name, source, targets, flags)` compiles `source` on first use
with the system C++ compiler (`$CXX`, else `c++`) against the XLA FFI headers
that ship with jaxlib, caches the shared library in `$JAXNN_CACHE_DIR`
(default `~/.cache/jaxnn`) under a hash of the source, compiler, flags, jaxlib
version and platform (so an edited source is rebuilt, never loaded stale), and
registers its handlers as CPU FFI targets. `available()` says whether that
worked; `error()` says why not, so callers can raise or fall back with a
message the user can act on.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import jax

from jaxnn._errors import JaxnnError

DEFAULT_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno")


def cache_dir() -> str:
  """Where compiled kernels are cached: `$JAXNN_CACHE_DIR`, else `~/.cache/jaxnn`."""
  return os.environ.get("JAXNN_CACHE_DIR") or os.path.join(
    os.path.expanduser("~"), ".cache", "jaxnn"
  )


class NativeLibrary:
  """A C++ FFI kernel library, built and registered once per process.

  Args:
    name: a short file-name stem ("fastfood").
    source: the C++17 source, including "xla/ffi/api/ffi.h".
    targets: {FFI target name: exported handler symbol}.
    flags: the compiler flags.
  """

  def __init__(
    self, name: str, source: str, targets: dict[str, str], flags: tuple[str, ...] = DEFAULT_FLAGS
  ):
    self.name, self.source, self.targets, self.flags = name, source, dict(targets), tuple(flags)
    self._lock = threading.Lock()
    self._status: dict = {}

  def library_path(self, compiler: str) -> str:
    """Where the library built by `compiler` is cached: any change of the source,
    flags, compiler or jaxlib (whose FFI headers it includes) gives a new file."""
    import jaxlib

    key = hashlib.sha256(
      "\0".join((self.source, *self.flags, compiler, jaxlib.__version__, sys.platform)).encode()
    ).hexdigest()[:16]
    return os.path.join(cache_dir(), f"{self.name}_{key}.so")

  def build(self) -> str:
    """Compiles the library into the cache (atomically) and returns its path."""
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not compiler:
      raise JaxnnError("no C++ compiler found (set $CXX or install g++)")
    path = self.library_path(compiler)
    if os.path.exists(path):
      return path
    os.makedirs(cache_dir(), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
      source = os.path.join(tmp, f"{self.name}.cc")
      with open(source, "w") as f:
        f.write(self.source)
      built = os.path.join(tmp, f"{self.name}.so")
      result = subprocess.run(
        [compiler, *self.flags, f"-I{jax.ffi.include_dir()}", source, "-o", built],
        capture_output=True,
        text=True,
      )
      if result.returncode:
        raise JaxnnError(
          f"compiling the {self.name} CPU kernel with {compiler} failed:\n{result.stderr[-2000:]}"
        )
      os.replace(built, path)  # atomic: concurrent builders all end with a complete file
    return path

  def available(self) -> bool:
    """Builds and registers the kernels once; False (see `error()`) if that fails."""
    with self._lock:
      if "ok" not in self._status:
        try:
          library = ctypes.cdll.LoadLibrary(self.build())
          for target, symbol in self.targets.items():
            jax.ffi.register_ffi_target(
              target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu"
            )
          self._status["ok"] = True
        except (JaxnnError, OSError) as e:
          self._status.update(ok=False, error=str(e))
      return self._status["ok"]

  def error(self) -> str:
    """Why `available()` is False ("" if it is not)."""
    return self._status.get("error", "")
