"""Checkpoints (memc_models.checkpoint): the released ones converted entry by entry (random weights
under the released names and shapes), what a file that does not fit says, load_model for the
tools, memc-train's training state written and restored, and writes that fail leaving the old
file whole."""

import io
import re

import pytest
import torch

import memc_models
from helpers import (FACTORIES, MANIFEST, RELEASED_VARIANTS as VARIANTS, assert_converter_places_every_released_entry,
                     full_disk, random_original_state_dict)
from helpers import shifted_frames as frames
from memc_models import convert_original_state_dict, load_original_checkpoint, memc_net_s
from memc_models.checkpoint import compare_state_dict, read_checkpoint
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


@pytest.mark.parametrize("variant", VARIANTS)
def test_converter_places_every_released_entry_with_its_shape(variant):
    assert_converter_places_every_released_entry(variant, FACTORIES[variant])


@pytest.mark.parametrize(
    "variant, released, ours",
    [
        ("MEMC_Net", "initScaleNets_filter.0.weight", "kernel_net.trunk.encoder.0.convs.0.weight"),
        ("MEMC_Net", "initScaleNets_filter.6.running_var", "kernel_net.trunk.encoder.0.norm.running_var"),
        ("MEMC_Net", "initScaleNets_filter.38.weight", "kernel_net.trunk.middle.norm.weight"),
        ("MEMC_Net", "initScaleNets_filter.64.weight", "kernel_net.trunk.decoder.4.convs.0.weight"),
        ("MEMC_Net", "initScaleNets_occlusion2.2.bias", "mask_net.heads.1.output.bias"),
        ("MEMC_Net", "rectifyNet.14.weight", "post_net.convs.7.weight"),
        ("MEMC_Net", "flownets.deconv4.0.weight", "flow_net.deconv4.0.weight"),
        ("MEMC_Net_s", "initScaleNets_filter.22.weight", "kernel_net.trunk.middle.convs.0.weight"),
        ("MEMC_Net_s", "initScaleNets_filter.25.weight", "kernel_net.trunk.decoder.0.convs.0.weight"),
        ("MEMC_Net_s", "initScaleNets_filter.43.running_mean", "kernel_net.trunk.decoder.4.norm.running_mean"),
        ("MEMC_Net_s", "flownets.moduleBasic.5.moduleBasic.8.bias", "flow_net.levels.5.8.bias"),
        ("MEMC_Net_star", "initScaleNets_occlusion.31.weight", "mask_net.trunk.middle.convs.2.weight"),
        ("MEMC_Net_star", "initScaleNets_filter.54.bias", "kernel_net.trunk.decoder.4.convs.0.bias"),
        ("MEMC_Net_star", "rectifyNet.body.3.body.2.weight", "post_net.blocks.3.conv2.weight"),
        ("MEMC_Net_star", "rectifyNet.body.10.weight", "post_net.body_out.weight"),
        ("MEMC_Net_star", "ctxNet.conv1.weight", "context_net.conv.weight"),
    ],
)
def test_converter_maps_layer_positions_to_blocks(variant, released, ours):
    state_dict = {name: torch.empty(shape, device="meta") for name, shape in MANIFEST[variant]["state_dict"].items()}
    marker = torch.zeros(MANIFEST[variant]["state_dict"][released])
    state_dict[released] = marker
    converted, _ = convert_original_state_dict(state_dict, variant)
    assert converted[ours] is marker


def test_converter_reports_entries_it_cannot_place_and_unwraps_containers():
    state_dict = {f"module.{name}": torch.empty(shape, device="meta") for name, shape in MANIFEST["MEMC_Net_s"]["state_dict"].items()}
    state_dict["module.extra.weight"] = torch.empty(1, device="meta")
    converted, unplaced = convert_original_state_dict({"state_dict": state_dict}, "memc-net_s")
    assert unplaced == ["extra.weight"]
    assert len(converted) == len(MANIFEST["MEMC_Net_s"]["state_dict"])
    with pytest.raises(RuntimeError, match="extra.weight"):
        load_original_checkpoint({"state_dict": state_dict}, "MEMC_Net_s")


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant must be one of"):
        convert_original_state_dict({}, "DAIN")


@pytest.mark.parametrize(
    "name, variant",
    [("memc", "MEMC_Net"), ("memc_s", "MEMC_Net_s"), ("memc_star", "MEMC_Net_star"), ("memc_net_s", "MEMC_Net_s"),
     ("MEMC-Net*", "MEMC_Net_star"), ("MEMC_Net_s", "MEMC_Net_s")],
)
def test_variants_are_accepted_under_the_command_line_and_factory_names(name, variant):
    state_dict = {entry: torch.empty(shape, device="meta") for entry, shape in MANIFEST[variant]["state_dict"].items()}
    converted, unplaced = convert_original_state_dict(state_dict, name)
    assert unplaced == [] and len(converted) == len(state_dict)
    assert compare_state_dict(state_dict, name).fits


def test_the_readme_example_loads_a_released_file_by_its_command_line_name(tmp_path):
    torch.save(random_original_state_dict("MEMC_Net_s"), tmp_path / "MEMC-Net_s.pth")
    model = load_original_checkpoint(tmp_path / "MEMC-Net_s.pth", "memc_s")
    assert model.config.flow_network == "spynet" and not model.training


def test_loading_a_file_that_is_no_checkpoint_names_it_without_torchs_advice(tmp_path):
    path = tmp_path / "frame.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ValueError) as error:
        load_original_checkpoint(path, "memc_s")
    message = str(error.value)
    assert message.startswith(f"{path}: cannot read it as a PyTorch checkpoint (")
    assert "weights_only" not in message and "\n" not in message


def test_a_pickled_model_is_refused_without_terminal_codes_or_weights_only_advice(tmp_path):
    path = tmp_path / "whole_model.pt"
    torch.save(torch.nn.Linear(1, 1), path)
    with pytest.raises(ValueError) as error:
        read_checkpoint(path)
    message = str(error.value)
    assert message == (f"{path}: cannot read it as a PyTorch checkpoint (it holds a pickled torch.nn.modules.linear.Linear, "
                       "not only tensors; save a state dict (model.state_dict()) instead)")


@pytest.mark.parametrize(
    "content, message",
    [
        (torch.zeros(3), "it holds a tensor, not a state dict (a dict of names to tensors)"),
        ([torch.zeros(3)], "it holds a list, not a state dict (a dict of names to tensors)"),
        ({}, "it holds an empty dict, not a state dict"),
        ({"a": 1}, "it is not a state dict: entry 'a' holds an int, not a tensor"),
        ({"model": {"a": torch.zeros(1)}, "epoch": 3},
         "it is a memc-train last.pt (model, optimizer, ...), not a state dict: load its weights with "
         "model.load_state_dict(torch.load(path, weights_only=True)['model'])"),
    ],
)
def test_loading_a_file_without_a_state_dict_says_what_it_holds(tmp_path, content, message):
    path = tmp_path / "thing.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match=re.escape(f"{path}: {message}")):
        load_original_checkpoint(path, "memc_s")


def test_our_own_state_dict_is_refused_with_a_hint_to_load_state_dict():
    with torch.device("meta"):
        ours = memc_net_s().state_dict()
    with pytest.raises(ValueError, match=re.escape(
            "the state dict holds memc_models' own names (as model.state_dict() saves them), not the released ones: "
            "load it with model.load_state_dict(torch.load(path, weights_only=True)) on memc_models.memc_net_s(), "
            "or pass it to memc-interpolate --checkpoint")):
        load_original_checkpoint(ours, "memc_s")


def test_a_released_checkpoint_that_nearly_fits_names_the_first_few_differences():
    state_dict = random_original_state_dict("MEMC_Net_s")
    missing = [name for name in state_dict if name.startswith("flownets.")][:5]
    for name in missing:
        del state_dict[name]
    state_dict["extra.weight"] = torch.zeros(1)
    state_dict["rectifyNet.0.bias"] = torch.zeros(7)
    with pytest.raises(RuntimeError) as error:
        load_original_checkpoint(state_dict, "MEMC_Net_s")
    message = str(error.value)
    assert message.startswith("the state dict does not fit MEMC_Net_s: 1 checkpoint entries have no place in MEMC_Net_s: extra.weight; ")
    assert f"5 weights of MEMC_Net_s are missing from the checkpoint: {', '.join(missing[:3])} and 2 more" in message
    assert "1 checkpoint entries have another shape in MEMC_Net_s: rectifyNet.0.bias (7,) instead of (64,)" in message
    with pytest.warns(UserWarning, match="keeping the model's own values"):
        model = load_original_checkpoint(state_dict, "MEMC_Net_s", strict=False)
    assert model.post_net.convs[0].bias.shape == (64,)


def test_compare_state_dict_lists_differences_in_the_checkpoints_own_naming():
    with torch.device("meta"):
        ours = memc_net_s().state_dict()
    ours["extra.weight"] = torch.zeros(1)
    mismatch = compare_state_dict(ours, "memc_s")
    assert not mismatch.released and mismatch.unexpected == ["extra.weight"] and not mismatch.missing
    assert mismatch.describe() == "1 entry unexpected (extra.weight)"
    released = random_original_state_dict("MEMC_Net_s")
    del released["rectifyNet.0.bias"]
    mismatch = compare_state_dict(released, "memc_s")
    assert mismatch.released and mismatch.missing == ["rectifyNet.0.bias"]


def test_checkpoint_without_batch_norm_counters_loads():
    state_dict = random_original_state_dict("MEMC_Net_s")
    state_dict = {name: value for name, value in state_dict.items() if not name.endswith("num_batches_tracked")}
    model = load_original_checkpoint(state_dict, "MEMC_Net_s")
    assert not model.training
    assert torch.equal(model.kernel_net.trunk.encoder[1].norm.running_var, state_dict["initScaleNets_filter.8.running_var"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_same_weights_loaded_twice_give_identical_outputs(variant, models, tmp_path):
    first = models(variant)  # loaded from random_original_state_dict(variant)
    torch.save(random_original_state_dict(variant), tmp_path / "released.pth")
    second = load_original_checkpoint(tmp_path / "released.pth", variant)
    frame0, frame1 = frames(1, 64, 64)
    with torch.no_grad():
        expected = first(frame0, frame1)
        assert torch.isfinite(expected).all()
        assert torch.equal(second(frame0, frame1), expected)


def test_own_checkpoints_round_trip_with_weights_only_loading(models):
    trained = models("MEMC_Net_s")
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    fresh = memc_net_s().eval()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    frame0, frame1 = frames(1, 64, 64)
    with torch.no_grad():
        assert torch.equal(fresh(frame0, frame1), trained(frame0, frame1))


def test_a_last_pt_with_weights_that_are_not_finite_is_refused_naming_it(tmp_path):
    model = memc_models.memc_net_s()
    optimizer = training.build_optimizer(model)
    scheduler = training.build_scheduler(optimizer)
    with torch.no_grad():
        model.post_net.convs[0].weight[0, 0, 0, 0] = float("nan")
    path = tmp_path / "last.pt"
    checkpoint.save_training_state(str(path), model, optimizer, scheduler, epoch=1, config={"model": "memc_s"})
    fresh = memc_models.memc_net_s()
    fresh_optimizer = training.build_optimizer(fresh)
    with pytest.raises(UserError, match=re.escape(
            f"--resume {path}: the weights are damaged (post_net.convs.0.weight holds NaN or inf values)")):
        checkpoint.load_training_state(str(path), fresh, fresh_optimizer, training.build_scheduler(fresh_optimizer))


# --- The options a state dict records (padding, fill_from_below) --------------------------------


def test_a_saved_model_loads_with_the_options_it_was_saved_with(tmp_path):
    saved = memc_models.memc_net_s().configure(**memc_models.RELEASE_OPTIONS)
    path = tmp_path / "best.pt"
    checkpoint.save_weights(path, saved)
    plain = memc_models.memc_net_s()
    plain.load_state_dict(torch.load(path, weights_only=True))
    assert (plain.config.padding, plain.config.fill_from_below) == ("release", False)
    loaded = load_model(path, "memc_s")
    assert (loaded.config.padding, loaded.config.fill_from_below) == ("release", False)


def test_options_survive_a_data_parallel_prefix(tmp_path):
    wrapped = torch.nn.DataParallel(memc_models.memc_net_s().configure(padding="release"))
    path = tmp_path / "wrapped.pt"
    torch.save(wrapped.state_dict(), path)  # names and metadata under "module."
    loaded = load_model(path, "memc_s")
    assert (loaded.config.padding, loaded.config.fill_from_below) == ("release", True)


def test_a_state_dict_without_recorded_options_keeps_the_models_own():
    source = memc_models.memc_net_s().configure(**memc_models.RELEASE_OPTIONS)
    plain_dict = dict(source.state_dict())  # a plain dict: no metadata
    model = memc_models.memc_net_s()
    model.load_state_dict(plain_dict)
    assert (model.config.padding, model.config.fill_from_below) == ("minimal", True)


def test_released_weights_fine_tuned_keep_the_release_mode_through_last_pt(tmp_path, vimeo):
    model = memc_models.memc_net_s().configure(**memc_models.RELEASE_OPTIONS)
    optimizer = training.build_optimizer(model)
    path = str(tmp_path / "last.pt")
    checkpoint.save_training_state(path, model, optimizer, training.build_scheduler(optimizer), epoch=1,
                                   config={"model": "memc_s"})
    loaded = load_model(path, "memc_s")
    assert (loaded.config.padding, loaded.config.fill_from_below) == ("release", False)
