"""Running a method (memc_models.inference): the device, and interpolators whose outputs are checked."""

import os
import subprocess
import sys

import pytest
import torch

import memc_models
from memc_models import inference
from memc_models.errors import UserError
from memc_models.inference import build_interpolator, pick_device


def test_devices():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--device cuda: no CUDA GPU is visible; use --device cpu"):
            pick_device("cuda")


def test_the_training_free_interpolator_gives_one_frame_per_time():
    frame0, frame1 = torch.rand(1, 3, 24, 32), torch.rand(1, 3, 24, 32)
    frames = build_interpolator(torch.device("cpu"), fast=True)(frame0, frame1, [0.25, 0.75])
    assert [f.shape for f in frames] == [frame0.shape] * 2 and all(torch.isfinite(f).all() for f in frames)


@pytest.mark.parametrize("fast", [True, False])
def test_the_training_free_interpolator_comes_in_two_stages_that_give_its_frames(fast):
    from memc_models.classical import ClassicalConfig, ClassicalInterpolator
    from memc_models.streaming import Staged

    frame0, frame1 = torch.rand(1, 3, 24, 32), torch.rand(1, 3, 24, 32)
    interpolate = build_interpolator(torch.device("cpu"), fast=fast)
    assert isinstance(interpolate, Staged)
    staged = interpolate.render(frame0, frame1, interpolate.motion(frame0, frame1), [0.25, 0.75])
    classical = ClassicalInterpolator(ClassicalConfig(orientations=1 if fast else 4))
    direct = classical.interpolate(frame0, frame1, [0.25, 0.75])
    assert all(torch.equal(a, b) for a, b in zip(staged, direct))
    assert all(torch.equal(a, b) for a, b in zip(interpolate(frame0, frame1, [0.25, 0.75]), direct))


def test_a_model_output_that_is_not_finite_is_an_error_naming_the_checkpoint(monkeypatch):
    class Broken(torch.nn.Module):
        config = memc_models.MEMCNetConfig()

        def forward(self, frame0, frame1, t):
            return frame0 * float("inf")

    monkeypatch.setattr(inference, "load_model", lambda *args: Broken())
    interpolate = build_interpolator(torch.device("cpu"), "run/best.pt", "memc_s")
    with pytest.raises(UserError, match="--checkpoint run/best.pt produced a frame that is not finite"):
        interpolate(torch.ones(1, 3, 8, 8), torch.ones(1, 3, 8, 8), [0.5])


@pytest.mark.parametrize("program, user_value, expected", [
    ("import memc_models", None, "PASSIVE"),  # as the programs do: memc_models before torch
    ("import memc_models", "ACTIVE", "ACTIVE"),  # the user's own value stays
    ("import torch, memc_models", None, "unset"),  # torch (and libgomp) loaded first: left alone
])
def test_openmp_threads_sleep_while_waiting_when_memc_models_comes_first(program, user_value, expected):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = root
    if user_value is not None:
        env["OMP_WAIT_POLICY"] = user_value
    script = f"{program}; import os; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"
    result = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


@pytest.mark.parametrize("half", [False, True])
def test_an_enhancement_checkpoint_runs_under_float16_autocast_with_half_on_cuda_only(device, monkeypatch, half):
    seen = []

    class Model(torch.nn.Module):  # the centre frame, and whether float16 autocast was on
        def forward(self, frames, centre):
            seen.append(torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda") == torch.float16)
            return frames[:, centre]

    monkeypatch.setattr(inference, "load_enhancement_model", lambda path, device: Model())
    frames = torch.rand(3, 3, 8, 8)
    restored = inference.build_enhancer(device, "denoise", "model.pth", half=half)(frames, 1)
    assert seen == [half and device.type == "cuda"]
    assert restored.dtype == torch.float32 and torch.equal(restored.cpu(), frames[1])
