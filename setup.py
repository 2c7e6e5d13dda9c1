"""Builds memc_ops._C, the C++/CUDA kernels of memc, against the PyTorch already installed.

Environment variables:
  MEMC_OPS_CUDA=1      build the CUDA kernels (fail if torch has no CUDA or no toolkit is found)
  MEMC_OPS_CUDA=0      build the CPU kernels only
  (unset)              CUDA kernels when torch was built with CUDA and a CUDA toolkit is found
  TORCH_CUDA_ARCH_LIST GPU architectures to compile for (default: the GPU present, else a
                       list covering Turing to Blackwell)
  MAX_JOBS             the most compilers run at once (unset: ninja's default for each of the
                       folders built side by side)
"""

import concurrent.futures
import glob
import os
import platform
import subprocess
import sys
import threading

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _outer_site_packages_with_torch():
    """The site-packages holding the torch of the interpreter that runs this build.

    pip builds in an isolated environment that hides the packages installed beside it. An
    extension must be compiled against the very torch it will run with, so rather than letting pip
    download a second torch into that environment we look for the installed one.
    """
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    probe = "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))"
    for python in dict.fromkeys([sys.executable, getattr(sys, "_base_executable", sys.executable)]):
        try:
            result = subprocess.run([python, "-I", "-c", probe], env=clean_env, capture_output=True, text=True)
        except OSError:
            continue
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip().splitlines()[-1]
    return None


def _import_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        site_packages = _outer_site_packages_with_torch()
        if site_packages is None:
            sys.exit(
                "memc needs PyTorch installed before it is built, and builds against that torch.\n"
                "Install it first, for example `pip install torch`, then `pip install .` again."
            )
        sys.path.append(site_packages)
    import torch

    return torch


torch = _import_torch()
from torch.utils import cpp_extension  # noqa: E402


def _want_cuda():
    choice = os.environ.get("MEMC_OPS_CUDA", "").strip().lower()
    torch_has_cuda = torch.version.cuda is not None
    toolkit = cpp_extension.CUDA_HOME
    if choice in ("0", "false", "no", "off"):
        return False
    if choice in ("1", "true", "yes", "on"):
        if not torch_has_cuda:
            sys.exit(f"MEMC_OPS_CUDA=1, but the installed torch {torch.__version__} was built without CUDA.")
        if not _toolkit_usable(toolkit):
            sys.exit("MEMC_OPS_CUDA=1, but no CUDA toolkit was found: set CUDA_HOME (e.g. /usr/local/cuda).")
        return True
    if choice:
        sys.exit(f"MEMC_OPS_CUDA must be 0 or 1; got {choice!r}.")
    if torch_has_cuda and not _toolkit_usable(toolkit):
        print(f"memc: no usable CUDA toolkit (CUDA_HOME={toolkit}); set CUDA_HOME to build the CUDA kernels")
    return torch_has_cuda and _toolkit_usable(toolkit)


def _toolkit_usable(toolkit):
    return toolkit is not None and os.path.exists(os.path.join(toolkit, "include", "cuda_runtime.h"))


def _wheel_cuda_include_dirs():
    """CUDA headers shipped in the nvidia-* wheels beside torch, for toolkits that lack some
    (torch's headers include cusparse.h, which a minimal toolkit may not have)."""
    if os.path.exists(os.path.join(cpp_extension.CUDA_HOME, "include", "cusparse.h")):
        return []
    found = []
    for path in sys.path:
        found += sorted(glob.glob(os.path.join(path, "nvidia", "cu*", "include")))
    return found[:1]


# CPU capabilities the kernels under csrc/cpu/vectorized/ are compiled for, each as its own object
# files with its own flags (the flags of ATen's native/cpu kernels); the one to run is chosen at
# run time (csrc/cpu/capability.h), so one build runs everywhere and no -march=native is needed.
_CPU_CAPABILITIES = [
    ("DEFAULT", []),
    ("AVX2", ["-mavx2", "-mfma", "-mf16c", "-mbmi", "-mbmi2"]),
    ("AVX512", ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"]),
]


def _cpu_capabilities():
    """The capabilities this machine's compiler builds: the x86 ones on x86-64 with GCC or Clang."""
    if platform.machine().lower() in ("x86_64", "amd64") and not sys.platform.startswith("win"):
        return _CPU_CAPABILITIES
    return _CPU_CAPABILITIES[:1]


def _vectorized_sources():
    return sorted(glob.glob(os.path.join("csrc", "cpu", "vectorized", "*.cpp")))


class BuildExtensionPerCpuCapability(cpp_extension.BuildExtension):
    """cpp_extension's build, plus the vectorised CPU kernels compiled once per capability with
    CPU_CAPABILITY=<name> (the namespace they land in) and that capability's flags, linked in.

    With ninja, the capabilities compile on threads while the main sources compile (each a ninja
    run of its own folder), so that one large vectorised source does not hold up the rest: the link
    waits for all. Each ninja run starts up to MAX_JOBS compilers, so with MAX_JOBS set (a limit
    the user asked for, e.g. for memory) the capabilities' sources compile first, each a ninja run
    of its own, MAX_JOBS at a time (the largest first: one source of one capability takes most of
    the time), and then the main sources: never more than MAX_JOBS compilers at once, and all of
    them busy for as long as there is work for them. Without ninja, one after another.
    """

    def build_extension(self, ext):
        capabilities = _cpu_capabilities()
        max_jobs = os.environ.get("MAX_JOBS", "")
        if not self.use_ninja or max_jobs:
            # Without ninja, torch's compile swaps the shared compiler command for nvcc around each
            # .cu file: the capabilities compile before the main sources, not beside them.
            jobs = int(max_jobs) if self.use_ninja and max_jobs.isdigit() and int(max_jobs) > 0 else 1
            ext.extra_objects = list(ext.extra_objects or []) + self._compile_capabilities(ext, capabilities, jobs)
            super().build_extension(ext)
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(capabilities)) as pool:
            compiles = [pool.submit(self._compile_capability, ext, name, flags, _vectorized_sources(), name)
                        for name, flags in capabilities]
            link = self.compiler.link_shared_object

            def link_with_capability_objects(objects, *args, **kwargs):
                capability_objects = [path for compiled in compiles for path in compiled.result()]
                return link(list(objects) + capability_objects, *args, **kwargs)

            self.compiler.link_shared_object = link_with_capability_objects
            try:
                super().build_extension(ext)
            finally:
                self.compiler.link_shared_object = link

    def _compile_capabilities(self, ext, capabilities, jobs):
        """The object files of every capability's sources, each source of each capability compiled
        on its own (in its own folder: a ninja run owns its folder), ``jobs`` at a time."""
        largest_first = sorted(_vectorized_sources(), key=os.path.getsize, reverse=True)
        tasks = [(name, flags, source) for source in largest_first for name, flags in capabilities]

        # Set at the first failure (or Ctrl-C): from then on no compile starts, not even on a thread
        # that was free before the pool could be shut down; those running finish.
        stopped = threading.Event()

        def compile_one(task):
            if stopped.is_set():
                return []
            name, flags, source = task
            folder = os.path.join(name, os.path.splitext(os.path.basename(source))[0])
            try:
                return self._compile_capability(ext, name, flags, [source], folder)
            except BaseException:
                stopped.set()
                raise

        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            compiles = [pool.submit(compile_one, task) for task in tasks]
            try:
                concurrent.futures.wait(compiles, return_when=concurrent.futures.FIRST_EXCEPTION)
                # Fail at the first error, rather than after every other source has compiled.
                failed = next((compiled for compiled in compiles if compiled.done() and compiled.exception()), None)
                if failed is not None:
                    raise failed.exception()
            except BaseException:  # a failed compile, or Ctrl-C while waiting
                stopped.set()
                pool.shutdown(cancel_futures=True)
                raise
            return [path for compiled in compiles for path in compiled.result()]

    def _compile_capability(self, ext, name, flags, sources, folder):
        """The object files of ``sources`` (under csrc/cpu/vectorized/) for one CPU capability,
        built in build_temp/cpu_capability/``folder``."""
        compile_args = ext.extra_compile_args
        cxx_args = compile_args["cxx"] if isinstance(compile_args, dict) else compile_args
        macros = [("CPU_CAPABILITY", name), (f"CPU_CAPABILITY_{name}", None)]
        # Fresh lists: torch's ninja compile appends to the argument lists it is given.
        postargs = {"cxx": list(cxx_args) + flags}
        if isinstance(compile_args, dict) and "nvcc" in compile_args:
            postargs["nvcc"] = list(compile_args["nvcc"])
        return self.compiler.compile(
            sources, output_dir=os.path.join(self.build_temp, "cpu_capability", folder),
            macros=ext.define_macros + macros, include_dirs=list(ext.include_dirs), extra_postargs=postargs,
            depends=ext.depends,
        )


def _extension():
    sources = [os.path.join("csrc", "ops.cpp")] + sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    include_dirs = [os.path.join(ROOT, "csrc")]
    # -ffp-contract=off: no multiply fused with an add behind our back, so that the vectorised
    # kernels of every capability round as the scalar code does (their results agree bit for bit).
    cxx_flags = ["-O3", "-fopenmp", "-ffp-contract=off"]
    if len(_cpu_capabilities()) > 1:
        cxx_flags.append("-DMEMC_CPU_X86_CAPABILITIES")
    # at::parallel_for is an OpenMP region compiled into our code: without -fopenmp it runs serially.
    link_flags = ["-fopenmp"]
    # Everything whose change must relink: the headers, and the per-capability sources, which are
    # compiled outside the extension's own source list.
    depends = sorted(glob.glob(os.path.join("csrc", "**", "*.h"), recursive=True)) + _vectorized_sources()
    if not _want_cuda():
        print("memc: building the CPU kernels only")
        return cpp_extension.CppExtension(
            "memc_ops._C", sources, include_dirs=include_dirs, depends=depends,
            extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_flags,
        )
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        # No GPU to ask: cover the architectures CUDA 12/13 and current GPUs share.
        os.environ["TORCH_CUDA_ARCH_LIST"] = "7.5;8.0;8.6;8.9;9.0;10.0;12.0+PTX"
    print(f"memc: building the CPU and CUDA kernels (TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST', 'auto')})")
    sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
    return cpp_extension.CUDAExtension(
        "memc_ops._C", sources, include_dirs=include_dirs + _wheel_cuda_include_dirs(), depends=depends,
        extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--expt-relaxed-constexpr"]},
        extra_link_args=link_flags,
    )


setup(
    packages=find_packages(include=["memc_ops", "memc_ops.*", "memc_models", "memc_models.*"]),
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtensionPerCpuCapability},
)
