"""The C++ kernels: sources shipped as package data, warning-free builds, one dispatch rule."""

import importlib.resources
import pathlib
import warnings

import pytest

from jaxnn import JaxnnError
from jaxnn._native import NativeLibrary, find_compiler
from jaxnn.lm import _matmul_kernel
from jaxnn.subspace import _fastfood_kernel

KERNELS = {"fastfood": _fastfood_kernel, "lm_matmul": _matmul_kernel}
SOURCES = {
  "fastfood": ("jaxnn.subspace", "fastfood_kernel.cc"),
  "lm_matmul": ("jaxnn.lm", "matmul_kernel.cc"),
}
# A library without FFI handlers compiles in a fraction of a second.
TINY = 'extern "C" int jaxnn_tiny() { return 7; }\n'


def has_compiler() -> bool:
  try:
    find_compiler()
  except JaxnnError:
    return False
  return True


needs_compiler = pytest.mark.skipif(not has_compiler(), reason="no C++ compiler")


@pytest.mark.parametrize("name", KERNELS)
def test_the_kernel_source_is_package_data_compiled_in_place(name):
  package, resource = SOURCES[name]
  file = importlib.resources.files(package) / resource
  library = KERNELS[name]._LIBRARY
  assert library.source == file.read_text(encoding="utf-8")
  assert library.path is not None and pathlib.Path(library.path).samefile(str(file))
  module_text = pathlib.Path(KERNELS[name].__file__).read_text()
  assert "#include" not in module_text and "XLA_FFI_DEFINE_HANDLER" not in module_text


@needs_compiler
@pytest.mark.parametrize("name", KERNELS)
def test_the_kernel_compiles_without_warnings(name):
  """The build itself runs with -Wall -Wextra (on x86-64 GCC it compiles every
  `target_clones` variant: AVX-512, AVX2 and baseline) and records the
  compiler's messages next to the cached library: there must be none."""
  library = KERNELS[name]._LIBRARY
  assert {"-Wall", "-Wextra"} <= set(library.flags)
  assert library.warnings() == ""


@needs_compiler
def test_warnings_are_recorded_not_shown(monkeypatch, tmp_path, capfd):
  monkeypatch.setenv("JAXNN_CACHE_DIR", str(tmp_path))
  noisy = NativeLibrary("noisy", "int jaxnn_noisy(int unused) { return 1; }\n", {})
  noisy.build()
  assert "jaxnn: compiling" in capfd.readouterr().err  # and no warning
  assert "-Wunused-parameter" in noisy.warnings()


@needs_compiler
def test_compiler_errors_name_the_real_source_file(monkeypatch, tmp_path):
  monkeypatch.setenv("JAXNN_CACHE_DIR", str(tmp_path / "cache"))
  source = tmp_path / "broken_kernel.cc"
  source.write_text("int ok();\nthis is not C++\n")
  broken = NativeLibrary("broken", source.read_text(), {"jaxnn_broken": "Broken"}, path=str(source))
  assert not broken.available()
  assert f"{source}:2" in broken.error()
  # A file edited after it was read: the text that was read (and hashed) is
  # compiled, and messages still name the file and the right line.
  source.write_text("// edited\n")
  edited = NativeLibrary("broken2", broken.source, {}, path=str(source))
  with pytest.raises(JaxnnError, match=f"{source}:2"):
    edited.build()


@needs_compiler
def test_the_first_build_says_so_once(monkeypatch, tmp_path, capfd):
  monkeypatch.setenv("JAXNN_CACHE_DIR", str(tmp_path))
  tiny = NativeLibrary("tiny", TINY, {"jaxnn_tiny": "jaxnn_tiny"})
  path = tiny.build()
  assert capfd.readouterr().err == (
    f"jaxnn: compiling the C++ kernel tiny (first use, cached in {tmp_path})\n"
  )
  assert NativeLibrary("tiny", TINY, {}).build() == path  # cached: silent
  assert capfd.readouterr().err == ""


def test_an_unavailable_kernel_warns_once_or_raises_when_required(monkeypatch, tmp_path, capfd):
  monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
  monkeypatch.setenv("JAXNN_CACHE_DIR", str(tmp_path))
  library = NativeLibrary(
    "tiny", TINY, {"jaxnn_tiny": "jaxnn_tiny"}, title="the tiny kernel", fallback="plain XLA"
  )
  with pytest.warns(UserWarning, match="the tiny kernel is unavailable, using plain XLA: .*"):
    assert not library.use()
  assert library.error()
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert not library.use()  # the warning is given once
  with pytest.raises(JaxnnError, match="the tiny kernel is unavailable .*was not found"):
    library.use(required=True)
  assert "compiling" not in capfd.readouterr().err  # nothing to compile with
