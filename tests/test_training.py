"""Training (memc_models.training): the recipe's parameter groups, the loss, steps that lower it,
validation, and building a model from a checkpoint. Everything runs MEMC-Net_s on 32x64 frames."""

import math
import warnings

import pytest
import torch

import memc_models
from memc_models import datasets, training


def test_parameter_groups_follow_the_recipe():
    model = memc_models.memc_net_s()
    groups = training.parameter_groups(model, lr_scale=0.5)
    assert {g["name"]: g["lr"] for g in groups} == pytest.approx({"flow_net": 1e-5, "kernel_net": 1e-3, "post_net": 5e-4})
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each parameter exactly once
    with torch.device("meta"):
        star = memc_models.memc_net_star()
    lrs = {g["name"]: g["lr"] for g in training.parameter_groups(star)}
    assert lrs == pytest.approx({"flow_net": 2e-5, "kernel_net": 2e-3, "mask_net": 2e-3, "context_net": 2e-3, "post_net": 1e-3})
    optimizer = training.build_optimizer(model)
    assert isinstance(optimizer, torch.optim.Adamax) and optimizer.defaults["betas"] == (0.9, 0.999)
    scheduler = training.build_scheduler(optimizer)
    assert scheduler.factor == 0.2 and scheduler.patience == 5 and scheduler.mode == "min"


def test_charbonnier():
    output, target = torch.tensor([0.0, 0.5, 1.0]), torch.tensor([0.0, 0.25, 0.0])
    expected = (math.sqrt(1e-12) + math.sqrt(0.0625 + 1e-12) + math.sqrt(1 + 1e-12)) / 3
    assert float(training.charbonnier(output, target)) == pytest.approx(expected, rel=1e-6)
    assert float(training.charbonnier(target, target)) == pytest.approx(1e-6, rel=1e-3)


def test_training_steps_reach_every_group_at_its_rate_and_lower_the_loss(vimeo):
    model = memc_models.memc_net_s().train()
    optimizer = training.build_optimizer(model)
    batch = [x.unsqueeze(0) for x in datasets.VimeoTriplets(vimeo, "train")[0]]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = [training.train_step(model, optimizer, batch)]
    # Adamax's first step moves each parameter by lr * g / (|g| + eps): by its group's lr where
    # the gradient is not tiny, so the largest change in each group is that group's lr.
    changes = {name: (p.detach() - before[name]).abs().max() for name, p in model.named_parameters()}
    for group in optimizer.param_groups:
        names = [n for n, p in model.named_parameters() if any(p is q for q in group["params"])]
        largest = max(float(changes[n]) for n in names)
        assert largest == pytest.approx(group["lr"], rel=1e-2), group["name"]
    for _ in range(5):
        losses.append(training.train_step(model, optimizer, batch))
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]


def test_validate_reports_loss_and_psnr(vimeo):
    model = memc_models.memc_net_s()
    loader = torch.utils.data.DataLoader(datasets.VimeoTriplets(vimeo, "test"), batch_size=1)
    loss, psnr = training.validate(model, loader)
    assert model.training  # restored
    frame0, middle, frame1 = (x.unsqueeze(0) for x in loader.dataset[0])
    with torch.no_grad():
        model.eval()
        expected = float(training.charbonnier(model(frame0, frame1), middle))
    assert loss == pytest.approx(expected, rel=1e-5)
    assert 0 < psnr < 100


def test_non_finite_training_loss_is_an_error_without_warnings(vimeo):
    model = memc_models.memc_net_s().train()
    optimizer = training.build_optimizer(model)
    batch = [x.unsqueeze(0) for x in datasets.VimeoTriplets(vimeo, "train")[0]]
    batch[1] = torch.full_like(batch[1], math.nan)  # a NaN target makes the loss NaN
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FloatingPointError, match=r"^the training loss is nan; lower --lr or turn off --amp$"):
            training.train_step(model, optimizer, batch)


def test_init_checkpoint_loads_our_weights(tmp_path):
    source = memc_models.memc_net_s()
    path = str(tmp_path / "weights.pt")
    torch.save(source.state_dict(), path)
    model = training.build_model("memc_s", path)
    assert model.training
    for (name, a), (_, b) in zip(source.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), name


def test_init_checkpoint_loads_a_released_layout(tmp_path):
    """A checkpoint under the authors' names (as their .pth files hold them) goes through the converter."""
    from memc_models.checkpoint import original_names

    source = memc_models.memc_net_s()
    own = source.state_dict()
    released = {theirs: own[ours] for ours, theirs in original_names(source).items()}
    path = str(tmp_path / "MEMC-Net_s.pth")
    torch.save(released, path)
    model = training.build_model("memc_s", path)
    assert model.training
    for name, value in model.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(value, own[name]), name


def test_amp_picks_bfloat16_where_supported_and_scales_float16_gradients():
    cpu = torch.device("cpu")
    assert training.amp_dtype(cpu, None) is None
    assert training.amp_dtype(cpu, "auto") == torch.bfloat16  # CPUs run bfloat16 autocast
    assert training.amp_dtype(cpu, "float16") == torch.float16
    with pytest.raises(ValueError, match="amp must be one of auto, bfloat16, float16"):
        training.amp_dtype(cpu, "half")
    assert training.grad_scaler(cpu, torch.float16).is_enabled()
    assert not training.grad_scaler(cpu, torch.bfloat16).is_enabled() and not training.grad_scaler(cpu, None).is_enabled()


def test_a_septuplet_batch_trains_and_validates_at_each_sample_time(vimeo_septuplet, monkeypatch):
    model = memc_models.memc_net_s().train()
    samples = datasets.VimeoSeptuplets(vimeo_septuplet, "train")
    batch = [torch.stack(column) for column in zip(samples[0], samples[1])]
    assert batch[3].tolist() == pytest.approx([datasets.triple_time(datasets.FRAME_TRIPLES[n]) for n in (0, 1)])
    seen = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda frame0, frame1, t: seen.append(t) or forward(frame0, frame1, t))
    loss = training.train_step(model, training.build_optimizer(model), batch)
    assert math.isfinite(loss) and torch.equal(seen[0], batch[3])
    loss_sum, psnr_sum, count = training.validation_sums(model, [batch], torch.device("cpu"))
    assert count == 2 and torch.equal(seen[1], batch[3])
    assert training.validate(model, [batch]) == pytest.approx((loss_sum / 2, psnr_sum / 2))
    with pytest.raises(ValueError, match=r"a batch must be \(frame0, middle, frame1\) or \(frame0, middle, frame1, t\)"):
        training.train_step(model, training.build_optimizer(model), batch[:2])
