"""The benchmark scripts still run: each on a tiny case, one repeat (their figures are not checked
here; speed is what the scripts print, never a test's pass or fail)."""

import os
import sys

import pytest
import torch

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCHMARKS)


def test_bench_interpolate_times_every_method_on_a_small_frame():
    pytest.importorskip("cv2")
    import bench_interpolate

    rows = bench_interpolate.rows_for(bench_interpolate.METHODS, lambda device: [("tiny", 32, 48)])
    timed = rows(torch.device("cpu"), torch.float32, 1)
    assert [row["method"] for row in timed] == bench_interpolate.METHODS
    for row in timed:
        assert row["size"] == "48x32" and row["ms"] > 0 and row["fps"] == pytest.approx(1e3 / row["ms"])
        assert (row["flow_ms"] is not None) == row["method"].startswith("free")
    # float16 and bfloat16 apply to the networks only (bfloat16 convolutions are slow on a CPU:
    # which methods run is checked without running them).
    for method in ("free-fast", "free"):
        assert bench_interpolate.interpolator(method, torch.device("cpu"), torch.bfloat16) is None
    assert bench_interpolate.interpolator("memc_s", torch.device("cpu"), torch.bfloat16) is not None


def test_bench_interpolate_times_streams_of_the_training_free_path():
    pytest.importorskip("cv2")
    import bench_interpolate

    rows = bench_interpolate.rows_for(["free-fast", "memc_s"], lambda device: [("tiny", 32, 48)], warmup=0,
                                      stream_pairs=2)
    fast, network = rows(torch.device("cpu"), torch.float32, 1)
    assert fast["stream_ms"] > 0 and fast["piped_ms"] > 0 and fast["piped_peak_mib"] > 0
    assert fast["piped_yardsticks"] == pytest.approx(fast["piped_ms"] / fast["yardstick_ms"])
    assert network["stream_ms"] is None and network["piped_ms"] is None and network["piped_peak_mib"] is None


def test_bench_interpolate_frames_move_by_a_few_pixels():
    import bench_interpolate

    frame0, frame1 = bench_interpolate.moving_frames(64, 96, torch.device("cpu"))
    assert frame0.shape == frame1.shape == (1, 3, 64, 96)
    assert 0 <= float(frame0.min()) and float(frame0.max()) <= 1
    assert 0.01 < float((frame0 - frame1).abs().mean()) < 0.2


def test_bench_enhance_scores_every_method_on_a_small_window():
    pytest.importorskip("cv2")
    import argparse

    import bench_enhance

    from memc_models.enhancement_eval import Window

    generator = torch.Generator().manual_seed(0)
    texture = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 40, 56, generator=generator), 3, 1)[0]
    clip = torch.stack([texture[:, 2 * t : 2 * t + 32, t : t + 48] for t in range(3)])
    args = argparse.Namespace(sigma=20.0, nlm_h=12.0, qp=37, seed=0)
    rows = bench_enhance.run([Window("tiny", clip, 1)], "denoise", args)
    assert [row[0] for row in rows] == [name for name, _ in bench_enhance.methods_for("denoise", args)]
    scores = {row[0]: row[1] for row in rows}
    assert scores["ours"] > scores["noisy input"] + 3
    assert all(row[3] >= 0 for row in rows)
    table = bench_enhance.table("## tiny", rows)
    assert len(table.splitlines()) == 3 + len(rows)


def test_bench_train_times_one_and_two_processes():
    import bench_train

    rows = bench_train.rows_for(["memc_s"], [1, 2], batch_size=1, size_for=lambda device: (16, 32), warmup=0)
    timed = rows(torch.device("cpu"), torch.float32, 1)
    assert [(row["processes"], row["global_batch"]) for row in timed] == [(1, 1), (2, 2)]
    for row in timed:
        assert row["variant"] == "memc_s" and row["size"] == "32x16" and row["ms_per_step"] > 0
        assert row["samples_per_s"] >= row["samples_per_s_per_process"] > 0
    assert timed[0]["scaling"] == 1.0


def test_timed_methods_take_turns_so_a_change_in_load_reaches_all_alike():
    import common

    calls = []
    timed = {name: (lambda x, name=name: calls.append(name) or x * 2, (torch.ones(3),))
             for name in ("memc", "reference")}
    times = common.time_methods(timed, False, torch.device("cpu"), repeats=3, warmup=1)
    # In its turn each method runs once untimed, then once timed (with its own caches warm).
    assert calls == ["memc", "memc", "reference", "reference"] * 4
    assert set(times) == {"memc", "reference"} and all(ms > 0 for ms in times.values())


def test_the_dtypes_of_a_case_take_turns_and_are_compared_with_float32(monkeypatch):
    import bench_projection

    calls = []
    real = bench_projection.common.time_methods

    def recording(timed, *args, **kwargs):
        calls.append(list(timed))
        return real(timed, *args, **kwargs)

    monkeypatch.setattr(bench_projection.common, "time_methods", recording)
    rows = bench_projection.run_case("tiny", 1, 8, 12, "smooth", [torch.float32, torch.bfloat16], torch.device("cpu"),
                                     repeats=1, weighted=False)
    # One measurement per pass, in which every dtype and method takes its turn.
    assert calls == [[(torch.float32, "memc"), (torch.float32, "reference"), (torch.bfloat16, "memc"),
                      (torch.bfloat16, "reference")]] * 2
    assert [(row["pass"], row["dtype"], row["method"]) for row in rows] == [
        (p, d, m) for p in ("fwd", "fwd+bwd") for d in ("float32", "bfloat16") for m in ("memc", "reference")]
    for row in rows:
        twin = next(r for r in rows if r["dtype"] == "float32" and r["pass"] == row["pass"]
                    and r["method"] == row["method"])
        assert row["vs_float32"] == pytest.approx(row["ms"] / twin["ms"])


def test_results_json_is_written_whole(tmp_path):
    import json

    import common

    path = tmp_path / "results.json"
    path.write_text("an older run")
    common.write_json(str(path), {"torch": torch.__version__}, [{"case": "tiny", "ms": 1.5}])
    assert json.loads(path.read_text()) == {"environment": {"torch": torch.__version__},
                                            "results": [{"case": "tiny", "ms": 1.5}]}
    assert [entry.name for entry in tmp_path.iterdir()] == ["results.json"]


@pytest.mark.parametrize("script, sizes", [("bench_projection", {"CPU_SIZES": [("tiny", 1, 8, 12)]}),
                                           ("bench_warp", {"QUICK_SIZES": [("tiny", 1, 3, 8, 12)]})])
def test_the_op_benchmarks_print_every_dtype_beside_float32(monkeypatch, capsys, tmp_path, script, sizes):
    import importlib
    import json

    module = importlib.import_module(script)
    for name, value in sizes.items():
        monkeypatch.setattr(module, name, value)
    quick = ["--quick"] if script == "bench_warp" else []
    # (The allocator left alone: pytest's process is not a benchmark's.)
    module.main(quick + ["--device", "cpu", "--repeats", "1", "--dtype", "float32", "--dtype", "bfloat16",
                         "--hand-back-freed-memory", "--json", str(tmp_path / "out.json")])
    table = capsys.readouterr().out
    assert "x f32 time" in table and "bfloat16" in table and "heap C library's default" in table
    rows = json.loads((tmp_path / "out.json").read_text())["results"]
    assert {row["dtype"] for row in rows} == {"float32", "bfloat16"}
    assert all(row["ms"] > 0 and row["vs_float32"] > 0 for row in rows)


def test_the_benchmarks_keep_freed_memory_for_reuse_unless_asked_not_to(monkeypatch, capsys):
    # (memc_models.cli.common's test shows what keeping does; a setting of the whole process, so
    # it is only recorded here, in pytest's process.)
    import bench_projection

    kept = []
    monkeypatch.setattr(bench_projection.common, "keep_freed_memory", lambda: kept.append(True) or True)
    monkeypatch.setattr(bench_projection, "CPU_SIZES", [("tiny", 1, 8, 12)])
    bench_projection.main(["--device", "cpu", "--repeats", "1"])
    assert kept == [True] and "heap freed memory kept" in capsys.readouterr().out
    bench_projection.main(["--device", "cpu", "--repeats", "1", "--hand-back-freed-memory"])
    assert kept == [True] and "heap C library's default" in capsys.readouterr().out


def test_bench_train_workers_keep_freed_memory_as_the_benchmark_does(monkeypatch, capsys):
    import json

    import bench_train

    started = []

    class Worker:  # a stand-in for a worker process: records its options, reports one second a step
        def __init__(self, command, env):
            options = json.loads(command[-1])
            started.append(options["keep_freed_memory"])
            with open(os.path.join(options["out"], "rank0.json"), "w") as handle:
                json.dump({"seconds": 1.0}, handle)

        def wait(self):
            return 0

    monkeypatch.setattr(bench_train, "subprocess", type("Subprocess", (), {"Popen": Worker}))
    monkeypatch.setattr(bench_train.common, "keep_freed_memory", lambda: True)
    arguments = ["--device", "cpu", "--variant", "memc_s", "--processes", "1", "--repeats", "1"]
    bench_train.main(arguments)
    bench_train.main(arguments + ["--hand-back-freed-memory"])
    assert started == [True, False]
    capsys.readouterr()


def test_bench_enhance_keeps_freed_memory_and_says_so(monkeypatch, capsys, tmp_path):
    pytest.importorskip("cv2")
    import bench_enhance

    from memc_models.images import write_image

    generator = torch.Generator().manual_seed(0)
    texture = torch.nn.functional.avg_pool2d(torch.rand(3, 40, 56, generator=generator), 3, 1)
    (tmp_path / "seq").mkdir()
    for shift, name in enumerate(("frame10.png", "frame10i11.png", "frame11.png")):
        write_image(str(tmp_path / "seq" / name), texture[:, shift : shift + 32, shift : shift + 48])
    kept = []
    monkeypatch.setattr(bench_enhance.common, "keep_freed_memory", lambda: kept.append(True) or True)
    bench_enhance.main(["--middlebury", str(tmp_path), "--tasks", "denoise"])
    assert kept == [True] and "heap freed memory kept" in capsys.readouterr().out.splitlines()[0]
    bench_enhance.main(["--middlebury", str(tmp_path), "--tasks", "denoise", "--hand-back-freed-memory"])
    assert kept == [True] and "heap C library's default" in capsys.readouterr().out.splitlines()[0]
