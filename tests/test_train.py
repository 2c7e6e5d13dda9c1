"""Tests for memc-train: the Vimeo90K dataset and its augmentations, the optimiser's parameter
groups, a training step, checkpoints and resuming, the command line and its errors.

Everything runs MEMC-Net_s on 32x64 frames (SPyNet and the padding take any size)."""

import csv
import math
import os
import subprocess
import sys
import warnings

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import memc_models
from memc_models import train
from memc_models.interpolate import load_model

HEIGHT, WIDTH = 32, 64
SHIFT = (1, 2)  # (dy, dx) per frame: the scene moves down 1 and right 2 pixels each frame


def _write_triplet(folder, seed):
    """im1, im2, im3: windows of one random picture moved by SHIFT per frame."""
    rng = np.random.default_rng(seed)
    picture = rng.integers(0, 256, size=(HEIGHT + 8, WIDTH + 8, 3), dtype=np.uint8)
    os.makedirs(folder, exist_ok=True)
    for k in range(3):
        top, left = 4 - (k - 1) * SHIFT[0], 4 - (k - 1) * SHIFT[1]
        iio.imwrite(os.path.join(folder, f"im{k + 1}.png"), picture[top : top + HEIGHT, left : left + WIDTH])


@pytest.fixture
def vimeo(tmp_path):
    """A Vimeo90K-style root: sequences/00001/0001, 00001/0002 (train), 00002/0001 (test)."""
    root = tmp_path / "vimeo_triplet"
    for seed, name in enumerate(("00001/0001", "00001/0002", "00002/0001")):
        _write_triplet(root / "sequences" / name, seed)
    (root / "tri_trainlist.txt").write_text("00001/0001\n00001/0002\n")
    (root / "tri_testlist.txt").write_text("00002/0001\n")
    return str(root)


def _raw(folder):
    return torch.stack([torch.from_numpy(iio.imread(os.path.join(folder, f"im{k}.png"))).permute(2, 0, 1).float() / 255
                        for k in (1, 2, 3)])


# ---------------------------------------------------------------------------------------------- data


def test_dataset_reads_the_lists_and_returns_the_frames(vimeo):
    training = train.VimeoTriplets(vimeo, "train")
    testing = train.VimeoTriplets(vimeo, "test")
    assert len(training) == 2 and len(testing) == 1
    assert training.from_list and testing.from_list
    assert testing.folders[0].endswith(os.path.join("00002", "0001"))
    frame0, middle, frame1 = training[1]
    for frame in (frame0, middle, frame1):
        assert frame.shape == (3, HEIGHT, WIDTH) and frame.dtype == torch.float32
    raw = _raw(training.folders[1])
    assert torch.equal(torch.stack((frame0, middle, frame1)), raw)
    # The known motion: im3 is im1 moved by twice SHIFT.
    dy, dx = 2 * SHIFT[0], 2 * SHIFT[1]
    assert torch.equal(frame1[:, dy:, dx:], frame0[:, :-dy, :-dx])


def test_plain_folder_without_lists(tmp_path):
    for seed, name in enumerate(("a", "b/c")):
        _write_triplet(tmp_path / name, seed)
    (tmp_path / "not_a_triplet").mkdir()
    folders, from_list = train.triplet_folders(str(tmp_path), "train")
    assert not from_list
    assert sorted(os.path.relpath(f, tmp_path) for f in folders) == ["a", os.path.join("b", "c")]
    # Without a test list, validation uses the training triplets.
    assert train.triplet_folders(str(tmp_path), "test") == (folders, False)


def test_centred_crop_without_augmentation(vimeo):
    dataset = train.VimeoTriplets(vimeo, "test", crop=(16, 32))
    raw = _raw(dataset.folders[0])
    assert torch.equal(torch.stack(dataset[0]), raw[..., 8:24, 16:48])


def test_augment_triplet_swaps_and_flips_all_frames():
    frames = torch.arange(3 * 2 * 4 * 5, dtype=torch.float32).reshape(3, 2, 4, 5)
    swapped = train.augment_triplet(frames, False, False, True)
    assert torch.equal(swapped[0], frames[2]) and torch.equal(swapped[1], frames[1]) and torch.equal(swapped[2], frames[0])
    hflipped = train.augment_triplet(frames, True, False, False)
    vflipped = train.augment_triplet(frames, False, True, False)
    for k in range(3):
        assert torch.equal(hflipped[k], frames[k].flip(-1))
        assert torch.equal(vflipped[k], frames[k].flip(-2))


def test_augmented_crops_keep_the_frames_in_correspondence(vimeo):
    """Every augmented sample is one window, at one place, of one flip/swap of the triplet; over
    many draws every flip and the swap occur both ways."""
    crop = (16, 24)
    dataset = train.VimeoTriplets(vimeo, "train", crop=crop, augment=True)
    raw = _raw(dataset.folders[0]).numpy()
    seen = set()
    for _ in range(32):
        sample = torch.stack(dataset[0]).numpy()
        assert sample.shape == (3, 3) + crop
        matches = []
        for hflip in (False, True):
            for vflip in (False, True):
                for swap in (False, True):
                    moved = train.augment_triplet(torch.from_numpy(raw), hflip, vflip, swap).numpy()
                    windows = np.lib.stride_tricks.sliding_window_view(moved, crop, axis=(2, 3))  # (3, 3, y, x, h, w)
                    found = (windows == sample[:, :, None, None]).all(axis=(0, 1, 4, 5))
                    if found.any():
                        matches.append((hflip, vflip, swap))
        assert len(matches) == 1, "the three frames must come from one window of one transformed triplet"
        seen.add(matches[0])
    for position in range(3):
        assert {m[position] for m in seen} == {False, True}


# ----------------------------------------------------------------------------------- optimisation


def test_parameter_groups_follow_the_recipe():
    model = memc_models.memc_net_s()
    groups = train.parameter_groups(model, lr_scale=0.5)
    assert {g["name"]: g["lr"] for g in groups} == pytest.approx({"flow_net": 1e-5, "kernel_net": 1e-3, "post_net": 5e-4})
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each parameter exactly once
    with torch.device("meta"):
        star = memc_models.memc_net_star()
    lrs = {g["name"]: g["lr"] for g in train.parameter_groups(star)}
    assert lrs == pytest.approx({"flow_net": 2e-5, "kernel_net": 2e-3, "mask_net": 2e-3, "context_net": 2e-3, "post_net": 1e-3})
    optimizer = train.build_optimizer(model)
    assert isinstance(optimizer, torch.optim.Adamax) and optimizer.defaults["betas"] == (0.9, 0.999)
    scheduler = train.build_scheduler(optimizer)
    assert scheduler.factor == 0.2 and scheduler.patience == 5 and scheduler.mode == "min"


def test_charbonnier():
    output, target = torch.tensor([0.0, 0.5, 1.0]), torch.tensor([0.0, 0.25, 0.0])
    expected = (math.sqrt(1e-12) + math.sqrt(0.0625 + 1e-12) + math.sqrt(1 + 1e-12)) / 3
    assert float(train.charbonnier(output, target)) == pytest.approx(expected, rel=1e-6)
    assert float(train.charbonnier(target, target)) == pytest.approx(1e-6, rel=1e-3)


def test_training_steps_reach_every_group_at_its_rate_and_lower_the_loss(vimeo):
    model = memc_models.memc_net_s().train()
    optimizer = train.build_optimizer(model)
    batch = [x.unsqueeze(0) for x in train.VimeoTriplets(vimeo, "train")[0]]
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = [train.train_step(model, optimizer, batch)]
    # Adamax's first step moves each parameter by lr * g / (|g| + eps): by its group's lr where
    # the gradient is not tiny, so the largest change in each group is that group's lr.
    changes = {name: (p.detach() - before[name]).abs().max() for name, p in model.named_parameters()}
    for group in optimizer.param_groups:
        names = [n for n, p in model.named_parameters() if any(p is q for q in group["params"])]
        largest = max(float(changes[n]) for n in names)
        assert largest == pytest.approx(group["lr"], rel=1e-2), group["name"]
    for _ in range(5):
        losses.append(train.train_step(model, optimizer, batch))
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]


def test_validate_reports_loss_and_psnr(vimeo):
    model = memc_models.memc_net_s()
    loader = torch.utils.data.DataLoader(train.VimeoTriplets(vimeo, "test"), batch_size=1)
    loss, psnr = train.validate(model, loader)
    assert model.training  # restored
    frame0, middle, frame1 = (x.unsqueeze(0) for x in loader.dataset[0])
    with torch.no_grad():
        model.eval()
        expected = float(train.charbonnier(model(frame0, frame1), middle))
    assert loss == pytest.approx(expected, rel=1e-5)
    assert 0 < psnr < 100


def test_training_state_round_trip(tmp_path, vimeo):
    model = memc_models.memc_net_s()
    optimizer = train.build_optimizer(model)
    scheduler = train.build_scheduler(optimizer)
    train.train_step(model, optimizer, [x.unsqueeze(0) for x in train.VimeoTriplets(vimeo, "train")[0]])
    for loss in (1.0, 2.0, 2.0):
        scheduler.step(loss)
    path = str(tmp_path / "last.pt")
    train.save_training_state(path, model, optimizer, scheduler, epoch=3, config={"model": "memc_s"}, best_psnr=30.5)

    restored = memc_models.memc_net_s()
    restored_optimizer = train.build_optimizer(restored)
    restored_scheduler = train.build_scheduler(restored_optimizer)
    state = train.load_training_state(path, restored, restored_optimizer, restored_scheduler)
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


def test_init_checkpoint_loads_our_weights(tmp_path):
    source = memc_models.memc_net_s()
    path = str(tmp_path / "weights.pt")
    torch.save(source.state_dict(), path)
    model = train.build_model("memc_s", path)
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
    model = train.build_model("memc_s", path)
    assert model.training
    for name, value in model.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(value, own[name]), name


# ---------------------------------------------------------------------------------- command line


def _read_log(out):
    with open(os.path.join(out, "log.csv")) as handle:
        return list(csv.DictReader(handle))


def test_cli_trains_validates_saves_and_resumes(tmp_path, vimeo, capsys):
    out = str(tmp_path / "run")
    common = [vimeo, "--out", out, "--model", "memc_s", "--crop", "16", "32", "--max-steps", "1",
              "--workers", "0", "--device", "cpu", "-q"]
    assert train.main(common + ["--epochs", "1"]) == 0
    for name in ("last.pt", "best.pt", "log.csv"):
        assert os.path.isfile(os.path.join(out, name))
    rows = _read_log(out)
    assert [row["epoch"] for row in rows] == ["1"] and rows[0]["steps"] == "1"
    assert math.isfinite(float(rows[0]["val_loss"])) and 0 < float(rows[0]["val_psnr"]) < 100
    last = torch.load(os.path.join(out, "last.pt"), weights_only=True)
    assert last["epoch"] == 1 and last["config"]["model"] == "memc_s"
    assert set(last) >= {"model", "optimizer", "scheduler", "epoch", "config"}

    # best.pt is a plain state dict that memc-interpolate --checkpoint loads.
    best = torch.load(os.path.join(out, "best.pt"), weights_only=True)
    memc_models.memc_net_s().load_state_dict(best)
    loaded = load_model(os.path.join(out, "best.pt"), "memc_s", torch.device("cpu"))
    assert torch.equal(loaded.post_net.state_dict()["convs.0.weight"], best["post_net.convs.0.weight"])

    assert train.main(common + ["--epochs", "2", "--resume", os.path.join(out, "last.pt")]) == 0
    assert [row["epoch"] for row in _read_log(out)] == ["1", "2"]
    resumed = torch.load(os.path.join(out, "last.pt"), weights_only=True)
    assert resumed["epoch"] == 2
    assert any(not torch.equal(resumed["model"][k], last["model"][k]) for k in last["model"])


def _error(argv, capsys):
    code = train.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_cli_errors(tmp_path, vimeo, capsys):
    base = ["--workers", "0", "--device", "cpu", "-q", "--model", "memc_s", "--out", str(tmp_path / "out")]
    code, err = _error([str(tmp_path / "missing")] + base, capsys)
    assert code == 1 and "missing: no such folder" in err
    (tmp_path / "empty").mkdir()
    code, err = _error([str(tmp_path / "empty")] + base, capsys)
    assert code == 1 and "no Vimeo90K triplets" in err
    code, err = _error([vimeo, "--crop", "64", "64"] + base, capsys)
    assert code == 1 and "--crop 64 64 is larger than the frames" in err
    code, err = _error([vimeo, "--crop", "16", "32", "--resume", str(tmp_path / "nothing.pt")] + base, capsys)
    assert code == 1 and "no such file" in err
    (tmp_path / "bad_list").mkdir()
    (tmp_path / "bad_list" / "tri_trainlist.txt").write_text("00001/0001\n")
    code, err = _error([str(tmp_path / "bad_list")] + base, capsys)
    assert code == 1 and "without im1.png" in err
    assert not os.path.exists(tmp_path / "out" / "last.pt")


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "in-a-worker"])
def test_cli_a_later_triplet_smaller_than_the_crop_is_an_error(tmp_path, vimeo, capsys, workers):
    """The crop is checked against the first triplet up front; one that turns out smaller later is
    found while loading, in a DataLoader worker or not, and reported without a traceback."""
    small = os.path.join(vimeo, "sequences", "00001", "0002")
    for k in (1, 2, 3):
        path = os.path.join(small, f"im{k}.png")
        iio.imwrite(path, iio.imread(path)[: HEIGHT // 2])
    argv = [vimeo, "--crop", str(HEIGHT), str(WIDTH), "--workers", str(workers), "--device", "cpu", "-q",
            "--model", "memc_s", "--out", str(tmp_path / "out")]
    code, err = _error(argv, capsys)
    assert code == 1
    assert err.strip() == f"memc-train: error: {small}: frames of {HEIGHT // 2}x{WIDTH} (H x W) are smaller than --crop {HEIGHT} {WIDTH}"


def test_cli_wrong_variant_checkpoint_is_an_error(tmp_path, vimeo, capsys):
    path = str(tmp_path / "memc_s.pt")
    torch.save(memc_models.memc_net_s().state_dict(), path)
    code, err = _error([vimeo, "--model", "memc", "--crop", "16", "32", "--init-checkpoint", path, "--workers", "0", "--device", "cpu",
                        "-q", "--out", str(tmp_path / "out")], capsys)
    assert code == 1 and "it fits --model memc_s" in err
    assert err.startswith(f"memc-train: error: --init-checkpoint {path}")


def test_module_runs_as_a_program(tmp_path):
    result = subprocess.run([sys.executable, "-m", "memc_models.train", str(tmp_path / "missing"), "--device", "cpu"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "memc-train: error:" in result.stderr and "Traceback" not in result.stderr


def _quick(vimeo, out, *more):
    """A one-step-per-epoch run of memc_s on 16x32 crops into ``out``."""
    return [vimeo, "--out", str(out), "--model", "memc_s", "--crop", "16", "32", "--max-steps", "1",
            "--workers", "0", "--device", "cpu", "-q", *more]


def _no_work(monkeypatch):
    """Makes reading the data or building a model fail the test: errors must come before them."""
    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the error")
    monkeypatch.setattr(train, "VimeoTriplets", forbidden)
    monkeypatch.setattr(train, "build_model", forbidden)


def test_cli_out_that_is_a_file_or_below_one_is_an_error_before_any_work(tmp_path, vimeo, capsys, monkeypatch):
    _no_work(monkeypatch)
    a_file = tmp_path / "a.png"
    a_file.write_bytes(b"not a folder")
    code, err = _error(_quick(vimeo, a_file), capsys)
    assert code == 1 and err.strip() == f"memc-train: error: --out {a_file} is a file, not a folder"
    below = a_file / "run"
    code, err = _error(_quick(vimeo, below), capsys)
    assert code == 1 and err.strip() == f"memc-train: error: --out {below}: cannot create the folder (Not a directory)"
    assert a_file.read_bytes() == b"not a folder"


def test_cli_out_where_no_file_can_be_written_is_an_error_before_any_work(tmp_path, vimeo, capsys, monkeypatch):
    _no_work(monkeypatch)

    def refuse(*args, **kwargs):  # what a read-only folder answers (chmod does not stop root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(train.tempfile, "TemporaryFile", refuse)
    out = tmp_path / "out"
    code, err = _error(_quick(vimeo, out), capsys)
    assert code == 1 and err.strip() == f"memc-train: error: --out {out}: cannot write files there (Permission denied)"


@pytest.mark.parametrize("present", [("last.pt", "best.pt", "log.csv"), ("log.csv",)], ids=["run", "log-only"])
def test_cli_new_run_into_an_out_holding_a_run_is_an_error(tmp_path, vimeo, capsys, monkeypatch, present):
    """Training afresh there would replace best.pt and last.pt and log epochs 1, 2, 1."""
    _no_work(monkeypatch)
    out = tmp_path / "run"
    out.mkdir()
    for name in present:
        (out / name).write_text("old run")
    code, err = _error(_quick(vimeo, out), capsys)
    resume = f"continue it with --resume {out / 'last.pt'}, " if "last.pt" in present else ""
    assert code == 1 and err.strip() == (
        f"memc-train: error: --out {out} already holds a run ({', '.join(present)}); {resume}"
        "pick another --out, or pass --overwrite to start afresh there")
    assert all((out / name).read_text() == "old run" for name in present)


def test_cli_overwrite_starts_afresh_in_an_out_holding_a_run(tmp_path, vimeo, capsys):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("last.pt", "best.pt"):
        (out / name).write_text("old run")
    (out / "log.csv").write_text("epoch,steps\n1,1\n2,1\n")
    assert train.main(_quick(vimeo, out, "--epochs", "1", "--overwrite")) == 0
    assert [row["epoch"] for row in _read_log(str(out))] == ["1"]
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    memc_models.memc_net_s().load_state_dict(torch.load(out / "best.pt", weights_only=True))
    code, err = _error(_quick(vimeo, out, "--overwrite", "--resume", str(out / "last.pt")), capsys)
    assert code == 1 and err.strip() == "memc-train: error: --overwrite starts a new run; it cannot go with --resume, which continues one"


def test_cli_resume_into_a_new_out_carries_the_run_there(tmp_path, vimeo, capsys):
    first = tmp_path / "first"
    assert train.main(_quick(vimeo, first, "--epochs", "1")) == 0
    best = torch.load(first / "best.pt", weights_only=True)
    second = tmp_path / "second"
    assert train.main(_quick(vimeo, second, "--epochs", "2", "--resume", str(first / "last.pt"))) == 0
    assert [row["epoch"] for row in _read_log(str(second))] == ["1", "2"]
    assert [row["epoch"] for row in _read_log(str(first))] == ["1"]  # the first run is left as it was
    assert torch.load(first / "last.pt", weights_only=True)["epoch"] == 1
    assert torch.load(second / "last.pt", weights_only=True)["epoch"] == 2
    # best.pt is the first run's unless epoch 2 validated better, as it would be in one folder.
    second_best = torch.load(second / "best.pt", weights_only=True)
    epoch_two_improved = float(_read_log(str(second))[1]["val_psnr"]) > float(_read_log(str(first))[0]["val_psnr"])
    assert epoch_two_improved or all(torch.equal(second_best[k], best[k]) for k in best)


def test_cli_resume_into_a_new_out_stopped_in_its_first_epoch_can_be_run_again(tmp_path, vimeo, capsys, monkeypatch):
    first = tmp_path / "first"
    assert train.main(_quick(vimeo, first, "--epochs", "1")) == 0
    second = tmp_path / "second"
    command = _quick(vimeo, second, "--epochs", "2", "--resume", str(first / "last.pt"))
    with monkeypatch.context() as patch:
        _interrupt_at_step(patch, 1)
        assert train.main(command) == 130
    assert not second.exists() or not any(second.iterdir())  # nothing carried yet: the start can be retried
    capsys.readouterr()
    assert train.main(command) == 0
    assert [row["epoch"] for row in _read_log(str(second))] == ["1", "2"]


def test_cli_resume_through_a_link_follows_it_to_the_run(tmp_path, vimeo, capsys):
    run = tmp_path / "run"
    assert train.main(_quick(vimeo, run, "--epochs", "1")) == 0
    link = tmp_path / "latest.pt"
    link.symlink_to(run / "last.pt")
    assert train.main(_quick(vimeo, tmp_path / "new", "--epochs", "2", "--resume", str(link))) == 0
    assert [row["epoch"] for row in _read_log(str(tmp_path / "new"))] == ["1", "2"]  # the run's log.csv came along
    assert train.main(_quick(vimeo, run, "--epochs", "2", "--resume", str(link))) == 0  # in place
    assert [row["epoch"] for row in _read_log(str(run))] == ["1", "2"]


def test_cli_resume_of_a_run_whose_last_pt_is_a_link(tmp_path, vimeo, capsys):
    run = tmp_path / "run"
    assert train.main(_quick(vimeo, run, "--epochs", "1")) == 0
    kept = tmp_path / "kept" / "epoch1.pt"  # the run keeps its checkpoints elsewhere and links last.pt
    kept.parent.mkdir()
    os.replace(run / "last.pt", kept)
    (run / "last.pt").symlink_to(kept)
    assert train.main(_quick(vimeo, tmp_path / "new", "--epochs", "2", "--resume", str(run / "last.pt"))) == 0
    assert [row["epoch"] for row in _read_log(str(tmp_path / "new"))] == ["1", "2"]  # carried from the run
    assert train.main(_quick(vimeo, run, "--epochs", "2", "--resume", str(run / "last.pt"))) == 0  # in place
    assert [row["epoch"] for row in _read_log(str(run))] == ["1", "2"]


def test_cli_resume_of_a_lone_last_pt_says_what_the_new_out_lacks(tmp_path, vimeo, capsys):
    lone = tmp_path / "lone" / "last.pt"
    lone.parent.mkdir()
    model = memc_models.memc_net_s()
    optimizer = train.build_optimizer(model)
    train.save_training_state(str(lone), model, optimizer, train.build_scheduler(optimizer), epoch=1,
                              config={"model": "memc_s"}, best_psnr=99.0)
    out = tmp_path / "out"
    argv = _quick(vimeo, out, "--epochs", "2", "--resume", str(lone))
    argv.remove("-q")
    assert train.main(argv) == 0
    err = capsys.readouterr().err
    assert (f"note: no best.pt beside {lone}: {out / 'best.pt'} is written when an epoch beats its best validation "
            f"PSNR (99.00 dB)") in err
    assert f"note: no log.csv beside {lone}: {out / 'log.csv'} starts at epoch 2" in err
    assert not (out / "best.pt").exists()  # a random model does not reach 99 dB


def test_cli_resume_into_an_out_holding_another_run_is_an_error(tmp_path, vimeo, capsys, monkeypatch):
    _no_work(monkeypatch)
    last = tmp_path / "first" / "last.pt"
    last.parent.mkdir()
    _last_pt(last, {"model": "memc_s"})
    other = tmp_path / "other"
    other.mkdir()
    (other / "log.csv").write_text("epoch,steps\n1,1\n")
    code, err = _error(_quick(vimeo, other, "--epochs", "2", "--resume", str(last)), capsys)
    assert code == 1 and err.strip() == (
        f"memc-train: error: --out {other} holds another run (log.csv) than --resume {last}; "
        f"continue {last}'s run in its own folder or in a new --out")
    assert (other / "log.csv").read_text() == "epoch,steps\n1,1\n"


def _last_pt(path, config):
    """A memc-train last.pt of a fresh memc_s with this config."""
    model = memc_models.memc_net_s()
    optimizer = train.build_optimizer(model)
    train.save_training_state(str(path), model, optimizer, train.build_scheduler(optimizer), epoch=1, config=config)


def test_cli_resume_with_another_model_names_the_right_one_before_any_work(tmp_path, vimeo, capsys, monkeypatch):
    _no_work(monkeypatch)
    last = tmp_path / "last.pt"
    _last_pt(last, {"model": "memc_s"})
    out = tmp_path / "out"
    code, err = _error([vimeo, "--model", "memc", "--resume", str(last), "--out", str(out), "--epochs", "2",
                        "--workers", "0", "--device", "cpu", "-q"], capsys)
    assert code == 1 and err.strip() == f"memc-train: error: --resume {last} was trained with --model memc_s; pass --model memc_s"
    assert not out.exists()


def test_resume_that_does_not_load_says_how_it_differs(tmp_path):
    """Without the model in its config, the load itself fails: the message counts and names what
    differs (torch's first line names nothing)."""
    last = tmp_path / "last.pt"
    _last_pt(last, {})
    model = memc_models.memc_net()
    optimizer = train.build_optimizer(model)
    with pytest.raises(train.UserError) as caught:
        train.load_training_state(str(last), model, optimizer, train.build_scheduler(optimizer))
    own, saved = model.state_dict(), memc_models.memc_net_s().state_dict()
    missing = [name for name in own if name not in saved]
    unexpected = [name for name in saved if name not in own]
    reshaped = [name for name in own if name in saved and saved[name].shape != own[name].shape]
    assert missing and unexpected and reshaped
    assert str(caught.value) == (
        f"--resume {last} does not fit this model: {len(missing)} weights missing (e.g. {missing[0]}), "
        f"{len(unexpected)} unexpected (e.g. {unexpected[0]}), {len(reshaped)} of another shape "
        f"(e.g. {reshaped[0]}: {tuple(saved[reshaped[0]].shape)} saved, {tuple(own[reshaped[0]].shape)} in the model)")


@pytest.mark.parametrize("lr", ["inf", "nan", "0", "-1"])
def test_cli_lr_must_be_positive_and_finite(tmp_path, vimeo, capsys, monkeypatch, lr):
    _no_work(monkeypatch)
    code, err = _error(_quick(vimeo, tmp_path / "out", "--lr", lr), capsys)
    assert code == 1 and err.strip() == f"memc-train: error: --lr must be a positive finite number; got {float(lr)}"
    assert not (tmp_path / "out").exists()


def test_non_finite_training_loss_is_an_error_without_warnings(vimeo):
    model = memc_models.memc_net_s().train()
    optimizer = train.build_optimizer(model)
    batch = [x.unsqueeze(0) for x in train.VimeoTriplets(vimeo, "train")[0]]
    batch[1] = torch.full_like(batch[1], math.nan)  # a NaN target makes the loss NaN
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FloatingPointError, match=r"^the training loss is nan; lower --lr or turn off --amp$"):
            train.train_step(model, optimizer, batch)


def test_cli_non_finite_validation_loss_is_an_error_and_saves_nothing(tmp_path, vimeo, capsys, monkeypatch):
    """Diverged weights (the last step of an epoch can make them NaN) are not saved as a finished epoch."""
    monkeypatch.setattr(train, "validate", lambda *args, **kwargs: (math.nan, math.nan))
    out = tmp_path / "out"
    code, err = _error(_quick(vimeo, out, "--epochs", "1"), capsys)
    assert code == 1 and err.strip() == "memc-train: error: the validation loss after epoch 1 is nan; lower --lr or turn off --amp"
    assert not (out / "last.pt").exists() and not (out / "best.pt").exists()


def _interrupt_at_step(monkeypatch, step):
    """Ctrl-C arrives during training step ``step`` (counted from 1 over the whole run)."""
    real, calls = train.train_step, []

    def train_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "train_step", train_step)


def test_cli_ctrl_c_in_the_first_epoch_says_nothing_was_saved(tmp_path, vimeo, capsys, monkeypatch):
    _interrupt_at_step(monkeypatch, 1)
    out = tmp_path / "out"
    assert train.main(_quick(vimeo, out, "--epochs", "3")) == 130
    assert capsys.readouterr().err.strip() == "memc-train: interrupted in epoch 1; no epoch finished yet, so nothing was saved"
    assert not (out / "last.pt").exists()


def test_cli_ctrl_c_later_names_the_last_pt_to_resume_from(tmp_path, vimeo, capsys, monkeypatch):
    _interrupt_at_step(monkeypatch, 2)
    out = tmp_path / "out"
    assert train.main(_quick(vimeo, out, "--epochs", "3")) == 130
    last = out / "last.pt"
    assert capsys.readouterr().err.strip() == f"memc-train: interrupted in epoch 2; {last} holds epoch 1: continue with --resume {last}"
    assert torch.load(last, weights_only=True)["epoch"] == 1


def test_cli_ctrl_c_before_an_epoch_of_a_resumed_run_names_the_resumed_file(tmp_path, vimeo, capsys, monkeypatch):
    _interrupt_at_step(monkeypatch, 1)
    last = tmp_path / "saved.pt"
    _last_pt(last, {"model": "memc_s"})
    assert train.main(_quick(vimeo, tmp_path / "out", "--epochs", "3", "--resume", str(last))) == 130
    assert capsys.readouterr().err.strip() == f"memc-train: interrupted in epoch 2; {last} holds epoch 1: continue with --resume {last}"
