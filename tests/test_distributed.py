"""Tests for memc_models.distributed: torchrun's environment, the data split, batch norm and
gradients over several processes, and stopping every process together.

The tests with several processes start real gloo process groups: each process is
``python -c`` running one of the ``_worker_*`` functions below with torchrun's environment
variables set, as torchrun would start it; each run is bounded in time."""

import copy
import datetime
import os
import signal
import sys
import time

import pytest
import torch
import torch.distributed as dist
from torch import nn

from helpers import finish_processes, start_processes
from memc_models import distributed
from memc_models.distributed import Distributed, ShardSampler, SyncBatchNorm2d

TESTS = os.path.dirname(os.path.abspath(__file__))
#: Longest a run of several processes may take (they start torch in parallel on a busy machine).
RUN_LIMIT = 120


def _start(world_size, worker, *args):
    """Starts ``world_size`` processes running ``worker(*args)`` of this module, as torchrun would."""
    code = f"import sys; sys.path.insert(0, {TESTS!r}); import test_distributed; test_distributed.{worker}(*{args!r})"
    return start_processes(world_size, [sys.executable, "-c", code])


def _finish(processes, limit=RUN_LIMIT):
    return finish_processes(processes, limit)


# ---------------------------------------------------------------------------------------------- environment


def test_a_plain_run_has_no_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    run = distributed.init_distributed(torch.device("cpu"))
    assert (run.rank, run.world_size, run.is_distributed, run.is_main) == (0, 1, False, True)
    assert not dist.is_initialized()
    model = nn.Conv2d(1, 1, 1)
    assert distributed.wrap_model(model, run) is model and distributed.bare_model(model) is model
    assert distributed.all_reduce_sums([1.5, 2], run) == [1.5, 2.0]


def test_an_incomplete_environment_names_what_is_missing(monkeypatch):
    for name in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(distributed.DistributedError, match="sets RANK, WORLD_SIZE but not LOCAL_RANK, MASTER_ADDR, MASTER_PORT: start the processes with torchrun"):
        distributed.init_distributed(torch.device("cpu"))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("LOCAL_RANK", "zero")
    with pytest.raises(distributed.DistributedError, match="LOCAL_RANK must be a whole number; got 'zero'"):
        distributed.init_distributed(torch.device("cpu"))
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(distributed.DistributedError, match="RANK 2 is outside"):
        distributed.init_distributed(torch.device("cpu"))


# ---------------------------------------------------------------------------------------------- data


def test_validation_shards_hold_every_sample_once():
    for length in (0, 1, 5, 10):
        for world_size in (1, 2, 3):
            shards = [list(ShardSampler(length, rank, world_size)) for rank in range(world_size)]
            assert sorted(sum(shards, [])) == list(range(length))
            assert [len(ShardSampler(length, rank, world_size)) for rank in range(world_size)] == [len(s) for s in shards]
    with pytest.raises(ValueError, match="rank must be in 0..1"):
        ShardSampler(4, 2, 2)


def test_training_shares_are_one_permutation_reshuffled_each_epoch_from_the_seed():
    data = list(range(10))

    def shares(seed, epoch, world_size):
        result = []
        for rank in range(world_size):
            sampler = distributed.training_sampler(data, Distributed(rank=rank, world_size=world_size), seed)
            sampler.set_epoch(epoch)
            result.append(list(sampler))
        return result

    one = shares(seed=3, epoch=0, world_size=1)[0]
    two = shares(seed=3, epoch=0, world_size=2)
    assert sorted(one) == data
    assert sorted(two[0] + two[1]) == data and len(two[0]) == len(two[1]) == 5
    # The same permutation for any number of processes: process r takes every 2nd from r.
    assert two[0] == one[0::2] and two[1] == one[1::2]
    assert shares(seed=3, epoch=0, world_size=2) == two  # drawn from the seed and the epoch alone
    assert shares(seed=3, epoch=1, world_size=1)[0] != one
    assert shares(seed=4, epoch=0, world_size=1)[0] != one
    # Three processes and ten samples: each takes four steps, two samples are used twice.
    three = shares(seed=3, epoch=0, world_size=3)
    assert [len(share) for share in three] == [4, 4, 4] and set(sum(three, [])) == set(data)


class _DeadStore:
    """A store whose server has gone: every call fails, as a TCPStore client's then do."""

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise RuntimeError("Connection reset by peer")
        return fail


def test_stop_notices_keep_the_first_one():
    store = dist.TCPStore("127.0.0.1", 0, 1, True, timeout=datetime.timedelta(seconds=10))
    first = distributed.StopNotices(store, rank=1, world_size=2)
    second = distributed.StopNotices(store, rank=0, world_size=2, holds_store=True)
    assert first.read() is None
    assert first.post("failed", "im3.png: no such file") is None  # the first: it reports
    cause = distributed.StopNotice(1, "failed", "im3.png: no such file")
    assert second.post("interrupted") == cause  # a consequence: the first notice stays
    assert second.read() == cause
    assert second.from_peer() == second.read() and first.from_peer() is None
    # Both have acknowledged the stop: the holder of the store need not wait.
    started = time.monotonic()
    second.wait_for_all(limit=30)
    assert time.monotonic() - started < 5
    # A store that no longer answers means its holder has ended.
    gone = distributed.StopNotices(_DeadStore(), rank=0)
    assert gone.read() == gone.from_peer() == distributed.StopNotices.STORE_GONE
    assert gone.post("failed", "x") == distributed.StopNotices.STORE_GONE


# ---------------------------------------------------------------------------------------------- batch norm


def test_sync_batch_norm_in_one_process_is_batch_norm():
    torch.manual_seed(1)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    synced = distributed.sync_batch_norm(copy.deepcopy(plain))
    assert isinstance(synced[1], SyncBatchNorm2d) and isinstance(synced[2][0], SyncBatchNorm2d)
    assert synced.state_dict().keys() == plain.state_dict().keys()
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(synced(x), plain(x))
    assert torch.equal(synced[1].running_var, plain[1].running_var)


# ---------------------------------------------------------------------------------------------- several processes


def _small_net():
    """A network whose gradient depends on batch norm over the whole batch."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))


def _two_samples():
    generator = torch.Generator().manual_seed(5)
    inputs = torch.rand(2, 3, 6, 7, generator=generator) * 4 + 1  # a large mean: tests the variance
    targets = torch.rand(2, 3, 6, 7, generator=generator)
    return inputs, targets


def _step(model, inputs, targets):
    """One SGD step on the mean absolute error: returns the gradients it applied."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = (model(inputs) - targets).abs().mean()
    loss.backward()
    gradients = [p.grad.clone() for p in model.parameters()]
    optimizer.step()
    return gradients


def _worker_one_step(out_dir):
    """Each process: one step on its own sample (batch 1), and the sums of its validation shard."""
    torch.set_num_threads(1)
    run = distributed.init_distributed(torch.device("cpu"), timeout=60)
    inputs, targets = _two_samples()
    model = distributed.wrap_model(_small_net(), run)
    gradients = _step(model, inputs[run.rank : run.rank + 1], targets[run.rank : run.rank + 1])
    values = [0.5, 1.25, 2.0, 4.5, 8.0]  # per-sample values of a validation set of 5
    shard = list(ShardSampler(len(values), run.rank, run.world_size))
    sums = distributed.all_reduce_sums([sum(values[i] for i in shard), len(shard)], run)
    torch.save({"state": distributed.bare_model(model).state_dict(), "gradients": gradients, "sums": sums},
               os.path.join(out_dir, f"rank{run.rank}.pt"))
    distributed.close_distributed(run)


def test_two_processes_with_batch_one_step_as_one_process_with_batch_two(tmp_path):
    results = _finish(_start(2, "_worker_one_step", str(tmp_path)))
    assert [code for code, _ in results] == [0, 0], results
    inputs, targets = _two_samples()
    single = _small_net()
    gradients = _step(single, inputs, targets)
    for rank in (0, 1):
        saved = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        # The bare model's state dict: no "module." prefix, batch norm's entries as they were.
        assert saved["state"].keys() == single.state_dict().keys()
        for got, expected in zip(saved["gradients"], gradients):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        for name, expected in single.state_dict().items():
            torch.testing.assert_close(saved["state"][name], expected, rtol=1e-5, atol=1e-6, msg=name)
        # Validation: the sums of both shards, as one process would add them up.
        assert saved["sums"] == [0.5 + 1.25 + 2.0 + 4.5 + 8.0, 5.0]


def _worker_stops(out_dir, cause, sigint="default"):
    """Both processes loop in plain Python, in no collective (so only the stop-notice watcher
    can stop rank 0); rank 1 fails (``cause`` "raise") or is interrupted by the test ("signal").
    ``sigint`` "ignored": the processes ignore SIGINT, as processes started by a shell's
    background job do. A process that stops on KeyboardInterrupt (not ended by the watcher's
    grace) leaves a file ``interrupted{rank}``."""
    torch.set_num_threads(1)
    if sigint == "ignored":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    run = distributed.init_distributed(torch.device("cpu"), timeout=60, watch_interval=0.2, stop_grace=10)
    with open(os.path.join(out_dir, f"ready{run.rank}"), "w"):
        pass
    try:
        step = 0
        while True:
            step += 1
            if run.rank == 0:
                time.sleep(0.05)
                continue
            if cause == "raise" and step == 20:
                raise ValueError("sequences/00001/0002/im3.png: no such file")
            time.sleep(0.05)
    except KeyboardInterrupt:
        with open(os.path.join(out_dir, f"interrupted{run.rank}"), "w"):
            pass
        cause = run.announce_stop("interrupted")
        if cause is not None and cause.reason == "failed":
            sys.exit(1)
        if run.is_main:
            print("interrupted; stopped every process", file=sys.stderr)
        sys.exit(130)
    except ValueError as error:
        distributed.exit_within(10, 1)
        if run.announce_stop("failed", str(error)) is None:
            print(f"error: rank {run.rank}: {error}", file=sys.stderr)
        sys.exit(1)


def _wait_for(paths, limit=RUN_LIMIT):
    deadline = time.monotonic() + limit
    while not all(os.path.exists(path) for path in paths):
        if time.monotonic() > deadline:
            pytest.fail(f"the processes did not start within {limit} s")
        time.sleep(0.1)


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_a_failing_process_stops_every_process_with_one_line(tmp_path, sigint):
    processes = _start(2, "_worker_stops", str(tmp_path), "raise", sigint)
    _wait_for([tmp_path / "ready0", tmp_path / "ready1"])
    started = time.monotonic()
    (code0, err0), (code1, err1) = _finish(processes)
    assert time.monotonic() - started < 30  # the failure, the watcher's poll, and exiting
    assert (code0, code1) == (1, 1)
    assert err1.strip() == "error: rank 1: sequences/00001/0002/im3.png: no such file"
    assert err0.strip() == ""  # its consequence is not reported again
    # Rank 0 was interrupted and stopped as on Ctrl-C, also when it ignores SIGINT (there is no
    # handler for the watcher to go through): not ended without cleaning up by the grace.
    assert os.path.exists(tmp_path / "interrupted0") and not os.path.exists(tmp_path / "interrupted1")


def test_interrupting_one_process_stops_every_process(tmp_path):
    processes = _start(2, "_worker_stops", str(tmp_path), "signal")
    _wait_for([tmp_path / "ready0", tmp_path / "ready1"])
    started = time.monotonic()
    processes[1].send_signal(signal.SIGINT)
    (code0, err0), (code1, err1) = _finish(processes)
    assert time.monotonic() - started < 30
    assert (code0, code1) == (130, 130)
    assert err0.strip() == "interrupted; stopped every process" and err1.strip() == ""


def _worker_recipe_step(out_dir):
    """Each process: one step of memc-train's recipe (MEMC-Net_s, Adamax) on its own triplet."""
    from memc_models import training

    torch.set_num_threads(1)
    run = distributed.init_distributed(torch.device("cpu"), timeout=60)
    batch = _two_triplets()
    model = distributed.wrap_model(_recipe_model(), run)
    training.train_step(model, _sgd(distributed.bare_model(model)), [x[run.rank : run.rank + 1] for x in batch])
    torch.save(distributed.bare_model(model).state_dict(), os.path.join(out_dir, f"rank{run.rank}.pt"))
    distributed.close_distributed(run)


def _sgd(model):
    """Plain SGD, so that the weights after a step show the gradients themselves. (The recipe's
    Adamax makes a first step of lr * g / |g|: for a gradient that is zero but for rounding, such
    as a convolution's bias before batch norm, that is lr times a random sign.)"""
    return torch.optim.SGD(model.parameters(), lr=1.0)


def _recipe_model():
    from memc_models import training

    torch.manual_seed(0)
    return training.build_model("memc_s")


def _two_triplets():
    generator = torch.Generator().manual_seed(7)
    frames = torch.rand(2, 3, 3, 32, 64, generator=generator)
    return [frames[:, 0], frames[:, 1], frames[:, 2], torch.tensor([0.5, 0.25])]


def test_memc_train_recipe_in_two_processes_steps_as_one_process_with_batch_two(tmp_path):
    """The property that makes DDP correct, for memc-train's step on MEMC-Net_s (batch norm,
    SPyNet levels that small frames leave unused, a time per sample): 2 processes x batch 1 step
    as 1 process x batch 2."""
    from memc_models import training

    results = _finish(_start(2, "_worker_recipe_step", str(tmp_path)))
    assert [code for code, _ in results] == [0, 0], results
    single = _recipe_model()
    training.train_step(single, _sgd(single), _two_triplets())
    expected = single.state_dict()
    for rank in (0, 1):
        saved = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert saved.keys() == expected.keys()
        for name, value in expected.items():
            torch.testing.assert_close(saved[name], value, msg=name)
