"""Building, registering and dispatching to the C++ XLA FFI kernels of the methods.

The kernels' sources are .cc files shipped next to the Python modules that call
them (`jaxnn/subspace/fastfood_kernel.cc`, `jaxnn/lm/matmul_kernel.cc`). A
`NativeLibrary` compiles its source on first use with the system C++ compiler
(`$CXX`, else `c++`) against the XLA FFI headers that ship with jaxlib, caches
the shared library in `$JAXNN_CACHE_DIR` (default `~/.cache/jaxnn`) under a hash
of the source text, compiler, flags, jaxlib version and platform (so an edited
source is rebuilt, never loaded stale), and registers its handlers as CPU FFI
targets. The source file is compiled where it lies, so compiler messages name
the real file.

`NativeLibrary.use()` is the one dispatch rule for every kernel: True when the
kernel is built and registered; otherwise it raises (when the kernel was asked
for explicitly) or warns once per process, naming the reason, and returns False
so that the caller takes its XLA path.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.resources
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings

import jax

from jaxnn._errors import JaxnnError

# -Wall -Wextra: every build records its warnings next to the library (tests
# require none; a user never sees them). -Wno-psabi: GCC's notes that a 64-byte
# vector argument's calling convention depends on AVX-512 do not apply to the
# kernels, whose vector-valued helpers are always inlined. No flag here changes
# the generated code but -O3 and -fno-math-errno.
DEFAULT_FLAGS = (
  "-O3",
  "-std=c++17",
  "-shared",
  "-fPIC",
  "-fno-math-errno",
  "-Wall",
  "-Wextra",
  "-Wno-psabi",
)


def cache_dir() -> str:
  """Where compiled kernels are cached: `$JAXNN_CACHE_DIR`, else `~/.cache/jaxnn`."""
  return os.environ.get("JAXNN_CACHE_DIR") or os.path.join(
    os.path.expanduser("~"), ".cache", "jaxnn"
  )


def find_compiler() -> str:
  """The C++ compiler kernels are built with: `$CXX`, else `c++` or `g++` on the PATH.

  Raises:
    JaxnnError: if there is none.
  """
  compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
  if not compiler:
    raise JaxnnError("no C++ compiler found: install g++ or set $CXX to one")
  if not shutil.which(compiler):
    raise JaxnnError(f"the C++ compiler $CXX={compiler} was not found: install it or unset $CXX")
  return compiler


class NativeLibrary:
  """A C++ FFI kernel library, built and registered once per process.

  Args:
    name: a short file-name stem ("fastfood").
    source: the C++17 source text, including "xla/ffi/api/ffi.h".
    targets: {FFI target name: exported handler symbol}.
    flags: the compiler flags.
    path: the file `source` was read from, if any: it is compiled in place, so
      that compiler messages point at it (a text without a file is compiled
      from a temporary copy).
    title: what the kernel is called in messages ("the Fastfood CPU kernel").
    fallback: what `use()` falls back to, for its warning ("XLA's dot").
    alternative: how a user who required the kernel can do without it, for the
      error `use(required=True)` raises ("use kernel='xla'").
  """

  def __init__(
    self,
    name: str,
    source: str,
    targets: dict[str, str],
    flags: tuple[str, ...] = DEFAULT_FLAGS,
    *,
    path: str | None = None,
    title: str | None = None,
    fallback: str = "XLA",
    alternative: str = "use the XLA implementation",
  ):
    self.name, self.source, self.targets, self.flags = name, source, dict(targets), tuple(flags)
    self.path = path
    self.title = title or f"the {name} CPU kernel"
    self.fallback, self.alternative = fallback, alternative
    self._lock = threading.Lock()
    self._status: dict = {}
    self._warned = False

  @classmethod
  def from_package(
    cls, name: str, package: str, resource: str, targets: dict[str, str], **kwargs
  ) -> NativeLibrary:
    """The library whose source is the file `resource` of `package` (package data).

    Args:
      name: as for `NativeLibrary`.
      package: the package holding the source ("jaxnn.subspace").
      resource: the source's file name ("fastfood_kernel.cc").
      targets: as for `NativeLibrary`.
      **kwargs: the other arguments of `NativeLibrary`.
    """
    file = importlib.resources.files(package) / resource
    path = str(file) if isinstance(file, pathlib.Path) else None  # None: inside an archive
    return cls(name, file.read_text(encoding="utf-8"), targets, path=path, **kwargs)

  def library_path(self, compiler: str) -> str:
    """Where the library built by `compiler` is cached: any change of the source,
    flags, compiler or jaxlib (whose FFI headers it includes) gives a new file."""
    import jaxlib

    key = hashlib.sha256(
      "\0".join((self.source, *self.flags, compiler, jaxlib.__version__, sys.platform)).encode()
    ).hexdigest()[:16]
    return os.path.join(cache_dir(), f"{self.name}_{key}.so")

  def compile(self, compiler: str, output: str, extra_flags: tuple[str, ...] = ()) -> str:
    """Compiles the source into `output` with `self.flags + extra_flags`.

    Returns:
      The compiler's diagnostics (warnings; "" when there are none).

    Raises:
      JaxnnError: if the compilation fails (with the compiler's messages).
    """
    with tempfile.TemporaryDirectory() as tmp:
      source = self.path
      if source is None or _read(source) != self.source:
        # No file, or one edited since it was read: compile the text that was
        # hashed, from a copy whose messages still name the original.
        source = os.path.join(tmp, f"{self.name}.cc")
        line = f'#line 1 "{self.path}"\n' if self.path else ""
        with open(source, "w", encoding="utf-8") as f:
          f.write(line + self.source)
      # -isystem: warnings are about our code, not jaxlib's headers.
      include = ("-isystem", jax.ffi.include_dir())
      command = [compiler, *self.flags, *extra_flags, *include, source]
      try:
        result = subprocess.run([*command, "-o", output], capture_output=True, text=True)
      except OSError as e:
        raise JaxnnError(
          f"cannot run the C++ compiler {compiler} ({e}): install g++ or set $CXX to one"
        ) from e
    if result.returncode:
      raise JaxnnError(f"compiling {self.title} with {compiler} failed:\n{result.stderr[-2000:]}")
    return result.stderr

  def build(self) -> str:
    """Compiles the library into the cache (atomically), unless it is there; returns its path."""
    compiler = find_compiler()
    path = self.library_path(compiler)
    if os.path.exists(path):
      return path
    directory = cache_dir()
    try:
      os.makedirs(directory, exist_ok=True)
    except OSError as e:
      raise JaxnnError(
        f"cannot create the kernel cache {directory} ({e}): set $JAXNN_CACHE_DIR"
      ) from e
    print(
      f"jaxnn: compiling the C++ kernel {self.name} (first use, cached in {directory})",
      file=sys.stderr,
      flush=True,
    )
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
      built = os.path.join(tmp, f"{self.name}.so")
      diagnostics = self.compile(compiler, built)
      log = os.path.join(tmp, "warnings.txt")
      with open(log, "w", encoding="utf-8") as f:
        f.write(diagnostics)
      os.replace(log, _warnings_path(path))  # before the library: a cached one has its log
      os.replace(built, path)  # atomic: concurrent builders all end with a complete file
    return path

  def warnings(self) -> str:
    """The compiler's warnings when the cached library was built ("" for none);
    builds it first if needed."""
    path = self.build()
    text = _read(_warnings_path(path))
    if text is None:  # the log was removed: compile again to see
      with tempfile.TemporaryDirectory() as tmp:
        text = self.compile(find_compiler(), os.path.join(tmp, f"{self.name}.so"))
    return text

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
        except (JaxnnError, OSError, AttributeError) as e:
          self._status.update(ok=False, error=str(e))
      return self._status["ok"]

  def error(self) -> str:
    """Why `available()` is False ("" if it is not)."""
    return self._status.get("error", "")

  def use(self, required: bool = False) -> bool:
    """Whether to call the kernel: True once it is built and registered.

    Otherwise, if `required` (the user asked for this kernel), raises; if not,
    warns once per process with the reason and returns False, and the caller
    takes its XLA path (`self.fallback`).

    Raises:
      JaxnnError: if `required` and the kernel cannot be built or loaded.
    """
    if self.available():
      return True
    if required:
      raise JaxnnError(f"{self.title} is unavailable ({self.error()}); or {self.alternative}")
    with self._lock:
      warn, self._warned = not self._warned, True
    if warn:
      warnings.warn(
        f"jaxnn: {self.title} is unavailable, using {self.fallback}: {self.error()}",
        stacklevel=4,  # the frame that called the kernel module's `use`
      )
    return False


def _warnings_path(library_path: str) -> str:
  return library_path.removesuffix(".so") + ".warnings.txt"


def _read(path: str) -> str | None:
  try:
    return pathlib.Path(path).read_text(encoding="utf-8")
  except OSError:
    return None
