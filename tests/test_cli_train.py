"""memc-train (memc_models.cli.train): a run that trains, validates, saves and resumes; its run
folder rules; its errors, which come before any work; how it ends when stopped.

Everything runs MEMC-Net_s on 32x64 frames (SPyNet and the padding take any size)."""

import csv
import errno
import math
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import memc_models
from helpers import (TRIPLET_HEIGHT as HEIGHT, TRIPLET_WIDTH as WIDTH, finish_processes, free_port, full_disk, iio,
                     run_program, start_processes)
from memc_models import datasets, training
from memc_models.checkpoint import load_model
from memc_models.cli import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _last_pt(path, config):
    """A memc-train last.pt of a fresh memc_s with this config."""
    model = memc_models.memc_net_s()
    optimizer = training.build_optimizer(model)
    train.save_training_state(str(path), model, optimizer, training.build_scheduler(optimizer), epoch=1, config=config)


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
    assert err.strip() == (f"memc-train: error: {small}: frames of {HEIGHT // 2}x{WIDTH} (H x W) are smaller than "
                           f"--crop {HEIGHT} {WIDTH}")


def test_cli_wrong_variant_checkpoint_is_an_error(tmp_path, vimeo, capsys):
    path = str(tmp_path / "memc_s.pt")
    torch.save(memc_models.memc_net_s().state_dict(), path)
    code, err = _error([vimeo, "--model", "memc", "--crop", "16", "32", "--init-checkpoint", path, "--workers", "0",
                        "--device", "cpu", "-q", "--out", str(tmp_path / "out")], capsys)
    assert code == 1 and "it fits --model memc_s" in err
    assert err.startswith(f"memc-train: error: --init-checkpoint {path}")


def test_module_runs_as_a_program(tmp_path):
    result = run_program("memc_models.cli.train", tmp_path / "missing", "--device", "cpu", timeout=120)
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
    code, err = _error(_quick(vimeo, out / "new"), capsys)  # nothing is made to find out
    assert code == 1 and err.strip() == (f"memc-train: error: --out {out / 'new'}: cannot create the folder in "
                                         f"{tmp_path} (Permission denied)")
    assert not out.exists()
    out.mkdir()
    code, err = _error(_quick(vimeo, out), capsys)
    assert code == 1 and err.strip() == f"memc-train: error: --out {out}: cannot write files there (Permission denied)"


def test_cli_out_with_a_name_too_long_is_an_error_before_any_work_and_leaves_nothing(tmp_path, vimeo, capsys,
                                                                                    monkeypatch):
    _no_work(monkeypatch)
    before = sorted(os.listdir(tmp_path))
    longest = os.pathconf(tmp_path, "PC_NAME_MAX")
    for name in ("x" * (longest + 1), "x" * (longest - 4)):  # too long for the folder, or for OUT.lock beside it
        out = tmp_path / "runs" / "deeper" / name
        code, err = _error(_quick(vimeo, out), capsys)
        assert code == 1 and err.strip() == (f"memc-train: error: --out {out}: cannot create the folder (File name too "
                                             f"long: each name in it at most {longest} bytes, the last at most "
                                             f"{longest - 5} here)")
        assert sorted(os.listdir(tmp_path)) == before  # no runs/ or runs/deeper/


def test_cli_out_is_made_only_after_the_data_has_been_checked(tmp_path, vimeo, capsys, monkeypatch):
    out = tmp_path / "runs" / "out"
    seen = []

    def triplets(*args, **kwargs):
        seen.append(out.parent.exists())
        return datasets.VimeoTriplets(*args, **kwargs)

    monkeypatch.setattr(train, "VimeoTriplets", triplets)
    assert train.main(_quick(vimeo, out, "--epochs", "1")) == 0
    assert seen == [False, False] and (out / "last.pt").is_file()


def test_cli_out_that_cannot_be_made_part_way_leaves_no_folder(tmp_path, vimeo, capsys, monkeypatch):
    """A failure of makedirs after it made some of the folders (a full disk): they go again."""
    out = tmp_path / "runs" / "deeper" / "out"
    make = os.makedirs

    def full_disk_after_the_first(path, *args, **kwargs):
        make(os.path.dirname(os.path.dirname(path)))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(train.os, "makedirs", full_disk_after_the_first)
    before = sorted(os.listdir(tmp_path))
    code, err = _error(_quick(vimeo, out), capsys)
    monkeypatch.undo()
    assert code == 1 and err.strip() == (f"memc-train: error: --out {out}: cannot create the folder "
                                         f"({os.strerror(errno.ENOSPC)})")
    assert sorted(os.listdir(tmp_path)) == before


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
    assert code == 1 and err.strip() == ("memc-train: error: --overwrite starts a new run; it cannot go with --resume, "
                                         "which continues one")


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


def test_cli_resume_with_another_model_names_the_right_one_before_any_work(tmp_path, vimeo, capsys, monkeypatch):
    _no_work(monkeypatch)
    last = tmp_path / "last.pt"
    _last_pt(last, {"model": "memc_s"})
    out = tmp_path / "out"
    code, err = _error([vimeo, "--model", "memc", "--resume", str(last), "--out", str(out), "--epochs", "2",
                        "--workers", "0", "--device", "cpu", "-q"], capsys)
    assert code == 1 and err.strip() == (f"memc-train: error: --resume {last} was trained with --model memc_s; "
                                         "pass --model memc_s")
    assert not out.exists()


@pytest.mark.parametrize("lr", ["inf", "nan", "0", "-1"])
def test_cli_lr_must_be_positive_and_finite(tmp_path, vimeo, capsys, monkeypatch, lr):
    _no_work(monkeypatch)
    code, err = _error(_quick(vimeo, tmp_path / "out", "--lr", lr), capsys)
    assert code == 1 and err.strip() == f"memc-train: error: --lr must be a positive finite number; got {float(lr)}"
    assert not (tmp_path / "out").exists()


def test_cli_non_finite_validation_loss_is_an_error_and_saves_nothing(tmp_path, vimeo, capsys, monkeypatch):
    """Diverged weights (the last step of an epoch can make them NaN) are not saved as a finished epoch."""
    monkeypatch.setattr(train, "validation_sums", lambda *args, **kwargs: (math.nan, math.nan, 1))
    out = tmp_path / "out"
    code, err = _error(_quick(vimeo, out, "--epochs", "1"), capsys)
    assert code == 1 and err.strip() == ("memc-train: error: the validation loss after epoch 1 is nan; lower --lr or "
                                         "turn off --amp")
    assert not (out / "last.pt").exists() and not (out / "best.pt").exists()


def _interrupt_at_step(monkeypatch, step):
    """Ctrl-C arrives during training step ``step`` (counted from 1 over the whole run)."""
    real, calls = training.train_step, []

    def train_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", train_step)


def test_cli_ctrl_c_in_the_first_epoch_says_nothing_was_saved(tmp_path, vimeo, capsys, monkeypatch):
    _interrupt_at_step(monkeypatch, 1)
    out = tmp_path / "out"
    assert train.main(_quick(vimeo, out, "--epochs", "3")) == 130
    assert capsys.readouterr().err.strip() == ("memc-train: interrupted in epoch 1; no epoch finished yet, so nothing "
                                               "was saved")
    assert not (out / "last.pt").exists()


def test_cli_ctrl_c_later_names_the_last_pt_to_resume_from(tmp_path, vimeo, capsys, monkeypatch):
    _interrupt_at_step(monkeypatch, 2)
    out = tmp_path / "out"
    assert train.main(_quick(vimeo, out, "--epochs", "3")) == 130
    last = out / "last.pt"
    assert capsys.readouterr().err.strip() == (f"memc-train: interrupted in epoch 2; {last} holds epoch 1: continue "
                                               f"with --resume {last}")
    assert torch.load(last, weights_only=True)["epoch"] == 1


def test_cli_ctrl_c_before_an_epoch_of_a_resumed_run_names_the_resumed_file(tmp_path, vimeo, capsys, monkeypatch):
    _interrupt_at_step(monkeypatch, 1)
    last = tmp_path / "saved.pt"
    _last_pt(last, {"model": "memc_s"})
    assert train.main(_quick(vimeo, tmp_path / "out", "--epochs", "3", "--resume", str(last))) == 130
    assert capsys.readouterr().err.strip() == (f"memc-train: interrupted in epoch 2; {last} holds epoch 1: continue "
                                               f"with --resume {last}")


# ---------------------------------------------------------------------------------------------
# Data checked up front; checkpoints and log.csv replaced atomically


def test_a_broken_validation_image_is_an_error_before_the_first_step(tmp_path, vimeo, capsys, monkeypatch):
    broken = os.path.join(vimeo, "sequences", "00002", "0001", "im3.png")
    with open(broken, "wb") as handle:
        handle.write(b"not a picture")
    monkeypatch.setattr(train, "build_model", lambda *args: pytest.fail("the model was built before the data check"))
    code, err = _error(_quick(vimeo, tmp_path / "out"), capsys)
    assert code == 1
    assert err.startswith(f"memc-train: error: 1 input file(s) cannot be used: {broken}: not a readable image (")
    assert not (tmp_path / "out" / "last.pt").exists()


def test_a_listed_triplet_missing_a_file_is_an_error_before_any_work(tmp_path, vimeo, capsys):
    os.remove(os.path.join(vimeo, "sequences", "00001", "0002", "im2.png"))
    code, err = _error(_quick(vimeo, tmp_path / "out"), capsys)
    assert code == 1 and "tri_trainlist.txt lists 1 folder(s) without im1.png, im2.png, im3.png" in err


def _spoil(vimeo, tmp_path, case):
    """Makes the data of ``case`` unusable; returns (data folder, extra options, words of the error)."""
    if case == "no triplets":
        (tmp_path / "empty").mkdir()
        return str(tmp_path / "empty"), [], "no Vimeo90K triplets"
    if case == "broken frame":
        with open(os.path.join(vimeo, "sequences", "00002", "0001", "im3.png"), "wb") as handle:
            handle.write(b"not a picture")
        return vimeo, [], "not a readable image"
    if case == "listed frame missing":
        os.remove(os.path.join(vimeo, "sequences", "00001", "0002", "im2.png"))
        return vimeo, [], "without im1.png, im2.png, im3.png"
    if case == "crop too large":
        return vimeo, ["--crop", "64", "64"], "--crop 64 64 is larger than the frames"
    if case == "later triplet smaller than the crop":  # found while training, in the first epoch
        small = os.path.join(vimeo, "sequences", "00001", "0002")
        for k in (1, 2, 3):
            path = os.path.join(small, f"im{k}.png")
            iio.imwrite(path, iio.imread(path)[: HEIGHT // 2])
        return vimeo, ["--crop", str(HEIGHT), str(WIDTH), "--max-steps", "2"], "are smaller than --crop"
    assert case == "septuplets on a triplet set"
    return vimeo, ["--septuplets"], "septuplet"


_BAD_DATA = ["no triplets", "broken frame", "listed frame missing", "crop too large",
             "later triplet smaller than the crop", "septuplets on a triplet set"]


@pytest.mark.parametrize("case", _BAD_DATA)
def test_bad_data_leaves_no_out_folder_behind(tmp_path, vimeo, capsys, case):
    data, extra, words = _spoil(vimeo, tmp_path, case)
    out = tmp_path / "runs" / "out"  # its parent is made for the run too
    before = sorted(os.listdir(tmp_path))
    code, err = _error(_quick(data, out, *extra), capsys)
    assert code == 1 and err.count("\n") == 1 and words in err, err
    assert sorted(os.listdir(tmp_path)) == before  # no runs/, runs/out or runs/out.lock


@pytest.mark.parametrize("case", ["no triplets", "crop too large"])
def test_bad_data_keeps_an_out_folder_that_was_there(tmp_path, vimeo, capsys, case):
    data, extra, words = _spoil(vimeo, tmp_path, case)
    out = tmp_path / "out"
    out.mkdir()
    code, err = _error(_quick(data, out, *extra), capsys)
    assert code == 1 and words in err
    assert out.is_dir() and os.listdir(out) == [] and not (tmp_path / "out.lock").exists()


def test_a_full_disk_is_one_line_naming_the_file_and_the_run_stays_as_it_was(tmp_path, vimeo, capsys, monkeypatch):
    out = tmp_path / "out"
    assert train.main(_quick(vimeo, out, "--epochs", "1")) == 0
    before = {name: (out / name).read_bytes() for name in ("last.pt", "best.pt", "log.csv")}
    full_disk(monkeypatch, lambda path: path.startswith(str(out / "last")))
    code, err = _error(_quick(vimeo, out, "--epochs", "2", "--resume", str(out / "last.pt")), capsys)
    assert code == 1 and err == f"memc-train: error: {out / 'last.pt'}: cannot write it (No space left on device)\n"
    assert (out / "last.pt").read_bytes() == before["last.pt"]
    assert (out / "log.csv").read_bytes() == before["log.csv"]
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "log.csv"]
    monkeypatch.undo()
    assert train.main(_quick(vimeo, out, "--epochs", "2", "--resume", str(out / "last.pt"))) == 0  # the rerun works


def test_a_second_run_into_the_same_out_is_refused_before_any_work(tmp_path, vimeo, capsys, monkeypatch):
    from memc_models.atomic import claim_folder

    _no_work(monkeypatch)
    out = tmp_path / "out"
    with claim_folder(out, "a training run into it"):  # as another process's run holds it
        code, err = _error(_quick(vimeo, out), capsys)
    assert code == 1 and err == (f"memc-train: error: {out}: another run is writing a training run into it (it holds "
                                 f"{out}.lock); wait for it to finish or choose another folder\n")


# ---------------------------------------------------------------------------------------------- several processes


#: Longest a run of several processes may take (they start torch in parallel on a busy machine).
RUN_LIMIT = 240


def _program(*argv):
    return [sys.executable, "-m", "memc_models.cli.train", *argv]


def _torchrun(processes, *argv, timeout=RUN_LIMIT):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                           "--master_port", str(free_port()), "-m", "memc_models.cli.train", *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT))


def _optimizer_steps(last):
    return {int(state["step"]) for state in last["optimizer"]["state"].values()}


def test_torchrun_trains_in_two_processes_and_resumes_in_one_and_back(tmp_path, vimeo):
    out = tmp_path / "run"
    common = [vimeo, "--out", out, "--model", "memc_s", "--crop", HEIGHT, WIDTH, "--workers", "0", "--device", "cpu"]
    result = _torchrun(2, *common, "--epochs", "2")
    assert result.returncode == 0, result.stderr
    # Rank 0 alone prints and writes: one line per epoch, the global batch said once.
    assert result.stderr.count("global batch 2 x 1 = 2") == 1, result.stderr
    assert result.stderr.count("epoch 1: train loss") == 1 and result.stderr.count("epoch 2: train loss") == 1
    assert sorted(os.listdir(out)) == ["best.pt", "last.pt", "log.csv"]
    rows = _read_log(out)
    assert [row["epoch"] for row in rows] == ["1", "2"] and [row["steps"] for row in rows] == ["1", "1"]
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["config"]["processes"] == 2 and _optimizer_steps(last) == {2}
    # The bare model's weights: they load into a plain model, and memc-interpolate takes them.
    plain = memc_models.memc_net_s()
    assert not any(name.startswith("module.") for name in last["model"])
    plain.load_state_dict(last["model"])
    loaded = load_model(str(out / "best.pt"), "memc_s", torch.device("cpu"))
    assert loaded.state_dict().keys() == plain.state_dict().keys()

    # Epoch 3 in one process (both triplets: 2 steps), epoch 4 in two again (1 step each).
    assert train.main([*map(str, common), "-q", "--epochs", "3", "--resume", str(out / "last.pt")]) == 0
    assert _optimizer_steps(torch.load(out / "last.pt", weights_only=True)) == {4}
    processes = start_processes(2, _program(*common, "-q", "--epochs", "4", "--resume", out / "last.pt"))
    assert [code for code, _ in finish_processes(processes, RUN_LIMIT)] == [0, 0]
    last = torch.load(out / "last.pt", weights_only=True)
    # Every process restored the optimizer and the scheduler: rank 0's, saved, went on from them.
    assert last["epoch"] == 4 and _optimizer_steps(last) == {5} and last["scheduler"]["last_epoch"] == 4
    assert [row["steps"] for row in _read_log(out)] == ["1", "1", "2", "1"]


def test_a_failing_process_stops_the_run_with_one_line(tmp_path, vimeo):
    # One training triplet whose frames differ in size: the process that draws it fails.
    folder = os.path.join(vimeo, "sequences", "00001", "0002")
    iio.imwrite(os.path.join(folder, "im2.png"), np.zeros((HEIGHT + 2, WIDTH, 3), dtype=np.uint8))
    processes = start_processes(2, _program(vimeo, "--out", tmp_path / "run", "--model", "memc_s", "--crop", HEIGHT,
                                            WIDTH, "--workers", "0", "--device", "cpu", "-q", "--epochs", "3"))
    results = finish_processes(processes, RUN_LIMIT)
    assert [code for code, _ in results] == [1, 1]
    lines = "".join(err for _, err in results).strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(r"memc-train: error: process [01] of 2: .*0002: the three frames differ "
                                            r"in size: .*", lines[0]), lines
    assert not os.path.exists(tmp_path / "run" / "last.pt")


def test_ctrl_c_in_one_process_stops_every_process(tmp_path, vimeo):
    out = tmp_path / "run"
    processes = start_processes(2, _program(vimeo, "--out", out, "--model", "memc_s", "--crop", HEIGHT, WIDTH,
                                            "--workers", "0", "--device", "cpu", "-q", "--epochs", "1000"))
    deadline = time.monotonic() + RUN_LIMIT
    while not os.path.exists(out / "log.csv"):  # an epoch done
        if time.monotonic() > deadline or any(process.poll() is not None for process in processes):
            finish_processes(processes, 1)
            pytest.fail("the run did not finish an epoch")
        time.sleep(0.2)
    processes[1].send_signal(signal.SIGINT)
    (code0, err0), (code1, err1) = finish_processes(processes, 60)
    assert (code0, code1) == (130, 130)
    assert re.fullmatch(rf"memc-train: interrupted in epoch \d+; {re.escape(str(out / 'last.pt'))} holds epoch \d+: "
                        rf"continue with --resume {re.escape(str(out / 'last.pt'))}", err0.strip()), err0
    assert err1.strip() == ""


def test_a_septuplet_set_trains(tmp_path, vimeo_septuplet, capsys):
    out = tmp_path / "run"
    assert train.main([vimeo_septuplet, "--septuplets", "--out", str(out), "--model", "memc_s", "--crop", "12", "16",
                       "--workers", "0", "--device", "cpu", "-q", "--epochs", "1"]) == 0
    rows = _read_log(out)
    assert [row["steps"] for row in rows] == ["2"] and 0 < float(rows[0]["val_psnr"]) < 100


def test_amp_trains_in_bfloat16_on_a_cpu(tmp_path, vimeo, capsys):
    argv = [a for a in _quick(vimeo, tmp_path / "run", "--epochs", "1", "--amp") if a != "-q"]  # the note shows
    assert train.main(argv) == 0
    assert "--amp: bfloat16 autocast on cpu" in capsys.readouterr().err
    assert math.isfinite(float(_read_log(tmp_path / "run")[0]["train_loss"]))
