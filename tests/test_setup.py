"""setup.py's parallel compile of the per-CPU-capability sources (the build itself is what CI and
`pip install .` exercise)."""

import os
import runpy
import threading
import time
from unittest import mock

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def build_class(monkeypatch):
    """setup.py's build_ext class, setup() itself not run, with a stand-in for one source's compile
    that records its folder in ``started``, takes ``seconds[folder]`` (else ``default_seconds``)
    and raises for the folder ``failing``."""
    import setuptools

    monkeypatch.chdir(ROOT)
    # setup.py may set TORCH_CUDA_ARCH_LIST for a CUDA build: pytest's process keeps its own.
    environment = dict(os.environ)
    try:
        with mock.patch.object(setuptools, "setup", lambda **kwargs: None):
            namespace = runpy.run_path(os.path.join(ROOT, "setup.py"))
    finally:
        os.environ.clear()
        os.environ.update(environment)
    build = namespace["BuildExtensionPerCpuCapability"]
    started, lock = [], threading.Lock()

    def compile_capability(self, ext, name, flags, sources, folder):
        with lock:
            started.append(folder)
        time.sleep(build.seconds.get(folder, build.default_seconds))
        if folder == build.failing:
            raise RuntimeError(f"error compiling {folder}")
        return [os.path.join(folder, "kernels.o")]

    monkeypatch.setattr(build, "_compile_capability", compile_capability)
    build.failing, build.started, build.seconds, build.default_seconds = None, started, {}, 0.02
    build.capabilities = namespace["_cpu_capabilities"]()
    build.sources = namespace["_vectorized_sources"]()
    return build


def test_every_capability_source_compiles_and_links_in_task_order(build_class):
    objects = build_class._compile_capabilities(object.__new__(build_class), None, build_class.capabilities, 2)
    largest_first = sorted(build_class.sources, key=os.path.getsize, reverse=True)
    assert objects == [os.path.join(name, os.path.splitext(os.path.basename(source))[0], "kernels.o")
                       for source in largest_first for name, _ in build_class.capabilities]


def test_a_failed_compile_stops_the_build_before_the_queued_ones_start(build_class):
    tasks = len(build_class.capabilities) * len(build_class.sources)
    if len(build_class.capabilities) < 2 or tasks < 4:
        pytest.skip("too few capability sources on this machine to queue any")
    # Two at a time, largest source first: while the first capability's compile of it runs, the
    # second's fails (after a while, as a compiler does: the build is waiting on both by then).
    largest = os.path.splitext(os.path.basename(max(build_class.sources, key=os.path.getsize)))[0]
    first, second = (os.path.join(name, largest) for name, _ in build_class.capabilities[:2])
    build_class.seconds[first], build_class.seconds[second], build_class.failing = 0.5, 0.1, second
    with pytest.raises(RuntimeError, match="error compiling"):
        build_class._compile_capabilities(object.__new__(build_class), None, build_class.capabilities, 2)
    # The running compile finished; none of those queued behind the failed one started, not even
    # on the thread the failure freed.
    assert sorted(build_class.started) == sorted([first, second])


def test_ctrl_c_during_the_build_starts_no_queued_compile(build_class, monkeypatch):
    import concurrent.futures

    tasks = len(build_class.capabilities) * len(build_class.sources)
    if tasks < 4:
        pytest.skip("too few capability sources on this machine to queue any")

    def interrupted(futures, **kwargs):
        time.sleep(0.05)  # the first two compiles are running
        raise KeyboardInterrupt

    build_class.default_seconds = 0.3
    monkeypatch.setattr(concurrent.futures, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_class._compile_capabilities(object.__new__(build_class), None, build_class.capabilities, 2)
    assert len(build_class.started) == 2  # those running finished; no other started
