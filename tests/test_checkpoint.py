"""Our own checkpoints (memc_models.checkpoint): memc-train's training state written and restored,
what a file that does not fit says, and writes that fail leaving the old file whole."""

import re

import pytest
import torch

import memc_models
from helpers import full_disk
from memc_models import checkpoint, datasets, errors, training
from memc_models.checkpoint import load_model
from memc_models.errors import UserError


def last_pt(path, config):
    """A memc-train last.pt of a fresh memc_s with this config."""
    model = memc_models.memc_net_s()
    optimizer = training.build_optimizer(model)
    checkpoint.save_training_state(str(path), model, optimizer, training.build_scheduler(optimizer), epoch=1, config=config)


def test_training_state_round_trip(tmp_path, vimeo):
    model = memc_models.memc_net_s()
    optimizer = training.build_optimizer(model)
    scheduler = training.build_scheduler(optimizer)
    training.train_step(model, optimizer, [x.unsqueeze(0) for x in datasets.VimeoTriplets(vimeo, "train")[0]])
    for loss in (1.0, 2.0, 2.0):
        scheduler.step(loss)
    path = str(tmp_path / "last.pt")
    checkpoint.save_training_state(path, model, optimizer, scheduler, epoch=3, config={"model": "memc_s"}, best_psnr=30.5)

    restored = memc_models.memc_net_s()
    restored_optimizer = training.build_optimizer(restored)
    restored_scheduler = training.build_scheduler(restored_optimizer)
    state = checkpoint.load_training_state(path, restored, restored_optimizer, restored_scheduler)
    assert state["epoch"] == 3 and state["best_psnr"] == 30.5 and state["config"] == {"model": "memc_s"}
    for (name, a), (_, b) in zip(model.state_dict().items(), restored.state_dict().items()):
        assert torch.equal(a, b), name
    ours, theirs = optimizer.state_dict(), restored_optimizer.state_dict()
    assert len(theirs["state"]) == len(ours["state"]) > 0
    for key, entry in ours["state"].items():
        for field in ("step", "exp_avg", "exp_inf"):
            assert torch.equal(entry[field], theirs["state"][key][field])
    assert [g["lr"] for g in theirs["param_groups"]] == [g["lr"] for g in ours["param_groups"]]
    assert restored_scheduler.num_bad_epochs == scheduler.num_bad_epochs == 2 and restored_scheduler.best == 1.0


def test_resume_that_does_not_load_says_how_it_differs(tmp_path):
    """Without the model in its config, the load itself fails: the message counts and names what
    differs (torch's first line names nothing)."""
    last = tmp_path / "last.pt"
    last_pt(last, {})
    model = memc_models.memc_net()
    optimizer = training.build_optimizer(model)
    with pytest.raises(errors.UserError) as caught:
        checkpoint.load_training_state(str(last), model, optimizer, training.build_scheduler(optimizer))
    own, saved = model.state_dict(), memc_models.memc_net_s().state_dict()
    missing = [name for name in own if name not in saved and not name.endswith("num_batches_tracked")]
    unexpected = [name for name in saved if name not in own]
    reshaped = [name for name in own if name in saved and saved[name].shape != own[name].shape]
    assert missing and unexpected and reshaped
    message = str(caught.value)
    assert message.startswith(f"--resume {last} does not fit this model: ")
    assert f"{len(missing)} entries missing ({missing[0]}" in message
    assert f"{len(unexpected)} entries unexpected ({unexpected[0]}" in message
    assert f"{len(reshaped)} entries of another shape ({reshaped[0]} {tuple(saved[reshaped[0]].shape)} instead of " \
           f"{tuple(own[reshaped[0]].shape)}" in message


# --- load_model: the command-line tools' --checkpoint and --init-checkpoint ----------------------


def test_load_model_takes_the_weights_of_a_memc_train_last_pt(tmp_path):
    trained = memc_models.memc_net_s()
    path = tmp_path / "last.pt"
    torch.save({"model": trained.state_dict(), "optimizer": {"state": {}}, "scheduler": {}, "epoch": 3,
                "config": {"model": "memc_s", "lr": 1.0}}, path)
    model = load_model(str(path), "memc_s", torch.device("cpu"))
    for name, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_load_model_names_the_variant_a_last_pt_was_trained_with(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"model": memc_models.memc_net_s().state_dict(), "epoch": 3, "config": {"model": "memc_s"}}, path)
    with pytest.raises(UserError, match=re.escape(
            f"--init-checkpoint {path} is a memc-train last.pt trained with --model memc_s; pass --model memc_s")):
        load_model(str(path), "memc_star", torch.device("cpu"), option="--init-checkpoint")


def test_load_model_messages_name_the_option_that_gave_the_file(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2], path)
    for option in ("--checkpoint", "--init-checkpoint"):
        with pytest.raises(UserError, match=re.escape(f"{option} {path}: it holds a list, not a state dict")):
            load_model(str(path), "memc_s", torch.device("cpu"), option=option)
    with pytest.raises(UserError, match=re.escape(f"--init-checkpoint {tmp_path / 'nothing.pt'}: no such file")):
        load_model(str(tmp_path / "nothing.pt"), "memc_s", torch.device("cpu"), option="--init-checkpoint")


def test_load_model_refuses_a_pickled_model_in_one_line_without_weights_only_advice(tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(torch.nn.Linear(1, 1), path)
    with pytest.raises(UserError) as error:
        load_model(str(path), "memc_s", torch.device("cpu"))
    assert str(error.value) == (f"--checkpoint {path}: cannot read it as a PyTorch checkpoint (it holds a pickled "
                                "torch.nn.modules.linear.Linear, not only tensors; save a state dict (model.state_dict()) instead)")


@pytest.mark.parametrize("model_name, nearest", [("memc_s", "memc_s"), ("memc_star", "memc_s")])
def test_load_model_names_what_keeps_a_nearly_fitting_state_dict_from_loading(tmp_path, model_name, nearest):
    with torch.device("meta"):
        state = memc_models.memc_net_s().state_dict()
    state = {name: torch.zeros(value.shape) for name, value in state.items()}
    state["extra.weight"] = torch.zeros(1)
    for name in [name for name in state if name.startswith("flow_net.levels.0.")][:4]:
        del state[name]
    path = tmp_path / "nearly.pt"
    torch.save(state, path)
    with pytest.raises(UserError) as error:
        load_model(str(path), model_name, torch.device("cpu"))
    assert str(error.value) == (
        f"--checkpoint {path} is not a --model {model_name} checkpoint; it fits none of memc, memc_s, memc_star "
        f"(as --model {nearest}: 4 entries missing (flow_net.levels.0.0.weight, flow_net.levels.0.0.bias, "
        "flow_net.levels.0.2.weight and 1 more); 1 entry unexpected (extra.weight))"
    )


def test_load_model_refuses_weights_that_are_not_finite(tmp_path):
    state = memc_models.memc_net_s().state_dict()
    state["post_net.convs.0.weight"][0, 0, 0, 0] = float("inf")
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(UserError, match=re.escape(
            f"--checkpoint {path}: the weights are damaged (post_net.convs.0.weight holds NaN or inf values)")):
        load_model(str(path), "memc_s")


def test_a_failed_save_leaves_the_previous_checkpoint_byte_for_byte(tmp_path, monkeypatch):
    path = tmp_path / "best.pt"
    checkpoint.save_weights(path, memc_models.memc_net_s())
    before = path.read_bytes()
    full_disk(monkeypatch, after_bytes=100_000)
    with pytest.raises(UserError, match=re.escape(f"{path}: cannot write it (No space left on device)")):
        checkpoint.save_weights(path, memc_models.memc_net_s())
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["best.pt"]
