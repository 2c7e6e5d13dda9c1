"""``memc-train``: train MEMC-Net, MEMC-Net_s or MEMC-Net* on Vimeo90K triplets.

    memc-train vimeo_triplet --model memc_s --out runs/memc_s
    memc-train vimeo_triplet --model memc_star --init-checkpoint MEMC-Net_star.pth --out runs/ft
    memc-train vimeo_triplet --resume runs/memc_s/last.pt --out runs/memc_s --epochs 120

The recipe is :mod:`memc_models.training`'s (DAIN's released one); the defaults: batch 1, 100
epochs, full 256x448 triplets with random horizontal and vertical flips and temporal order swap.

Before the first step every listed triplet is checked to exist and its files' headers to read;
``OUT`` is made (and claimed) only once the arguments, the data and the model have been checked and
loaded, so a start that fails leaves nothing behind.
Each epoch writes ``OUT/last.pt`` (model, optimizer, scheduler, epoch, config: for ``--resume``),
``OUT/best.pt`` (the model's state dict alone, when the validation PSNR improves: load it with
``memc-interpolate --checkpoint OUT/best.pt --model ...``) and a line of ``OUT/log.csv``, each
replaced atomically (a full disk is an error naming the file; the previous file stays whole).
``OUT`` is claimed for the run (``OUT.lock``): a second run into it is refused. A new run refuses
an ``OUT`` that holds one: continue it with ``--resume OUT/last.pt`` (log.csv grows) or replace it
with ``--overwrite``. Resuming into a new ``OUT`` copies the run's log.csv and best.pt there once
the first epoch validates; resuming into an ``OUT`` holding another run is refused.

Under torchrun (``torchrun --nproc_per_node=N -m memc_models.cli.train DATA ...``) the processes
train one model with DistributedDataParallel (:mod:`memc_models.distributed`): --batch-size is per
process, rank 0 alone writes and prints, checkpoints hold the bare model's weights, and a process
that fails or is interrupted stops all the others.
"""

import argparse
import contextlib
import csv
import errno
import io
import itertools
import math
import os
import signal
import sys
import tempfile
import time
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..atomic import check_unclaimed, claim_folder, copy_file, discard_pending, remove_empty_folders, write_file
from ..checkpoint import read_training_state, restore_training_state, save_training_state, save_weights
from ..datasets import VimeoSeptuplets, VimeoTriplets
from ..distributed import (Distributed, DistributedError, ShardSampler, all_reduce_sums, bare_model, close_distributed,
                           exit_within, init_distributed, training_sampler, wrap_model)
from ..errors import UserError, os_reason
from ..inference import pick_device
from ..training import (AMP_CHOICES, LEARNING_RATES, amp_dtype, build_model, build_optimizer, build_scheduler,
                        grad_scaler, train_epoch, validation_sums)
from ..variants import VARIANTS
from .common import HelpFormatter, Interrupted, run, signal_number, user_message

__all__ = ["main"]

PROG = "memc-train"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train MEMC-Net (memc), MEMC-Net_s (memc_s) or MEMC-Net* (memc_star) on Vimeo90K triplets "
        "with the recipe of DAIN's released train.py (Adamax, per-network learning rates, ReduceLROnPlateau, "
        "Charbonnier loss, flips and temporal swap). Under torchrun, one model in several processes "
        "(DistributedDataParallel: NCCL on GPUs, gloo on CPUs).",
        epilog="DATA is the Vimeo90K triplet folder (sequences/XXXXX/YYYY/im1.png im2.png im3.png with "
        "tri_trainlist.txt and tri_testlist.txt), or any folder of triplet folders (validated on the "
        "training triplets when it has no tri_testlist.txt).\n\n"
        "examples:\n  memc-train vimeo_triplet --model memc_s --out runs/memc_s\n"
        "  memc-train vimeo_triplet --model memc --init-checkpoint MEMC-Net_best.pth --lr 0.1 --out runs/ft\n"
        "  memc-train vimeo_triplet --model memc_s --resume runs/memc_s/last.pt --out runs/memc_s\n"
        "  memc-train vimeo_triplet --model memc_s --crop 128 128 --epochs 1 --max-steps 20 --val-limit 10\n"
        "  memc-train vimeo_septuplet --septuplets --model memc_s --out runs/any_t\n"
        "  torchrun --nproc_per_node=4 -m memc_models.cli.train vimeo_triplet --model memc_s --out runs/memc_s",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("data", metavar="DATA", help="Vimeo90K triplet folder, or a folder of triplet folders")
    parser.add_argument("--out", default=os.path.join("runs", "memc-train"), metavar="DIR",
                        help="where last.pt, best.pt and log.csv go (default: runs/memc-train)")
    parser.add_argument("--model", choices=list(VARIANTS), default="memc", help="the variant (default: memc)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--init-checkpoint", metavar="PATH",
                       help="start from these weights: ours (a state dict) or the authors' released checkpoint")
    start.add_argument("--resume", metavar="PATH",
                       help="continue from a last.pt: model, optimizer, scheduler and epoch; log.csv in --out is "
                            "appended to (into a new --out, the run's log.csv and best.pt are copied there after the "
                            "first epoch)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new run in an --out that holds one, deleting its last.pt, best.pt and log.csv "
                        "(without it, that is an error)")
    parser.add_argument("--epochs", type=int, default=100, help="train until this many epochs are done (default: 100)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="samples per step in each process (default: 1); under torchrun with N processes the "
                        "global batch is N times this")
    parser.add_argument("--crop", type=int, nargs=2, default=(256, 448), metavar=("H", "W"),
                        help="random training crop (default: 256 448, full Vimeo90K frames); validation uses full "
                        "frames")
    parser.add_argument("--lr", type=float, default=1.0, metavar="SCALE",
                        help="multiplies every learning rate (default 1: 2e-3 kernel/mask/context, 2e-5 flow, 1e-3 "
                        "post-processing)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="data loading processes (default: min(4, CPUs))")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where to train (default: auto)")
    parser.add_argument("--amp", nargs="?", const="auto", choices=AMP_CHOICES,
                        help="mixed precision: autocast to bfloat16 where the device supports it (CPUs, GPUs from "
                        "Ampere on), else float16 with a gradient scaler; or the one named")
    parser.add_argument("--septuplets", action="store_true",
                        help="DATA is Vimeo90K's septuplet set (sep_trainlist.txt, sep_testlist.txt, im1..im7.png): "
                        "samples are any three frames i < j < k, at t = (j - i) / (k - i)")
    parser.add_argument("--dist-timeout", type=float, default=600.0, metavar="SECONDS",
                        help="under torchrun: how long a process waits for the others, to start and in each exchange, "
                        "before it gives up (default: 600)")
    parser.add_argument("--max-steps", type=int, metavar="N", help="at most N training steps per epoch (quick runs)")
    parser.add_argument("--val-limit", type=int, metavar="N", help="validate on the first N test triplets only")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser



def _check_args(args) -> None:
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1; got {getattr(args, name)}")
    for name in ("max_steps", "val_limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1; got {value}")
    if not (math.isfinite(args.dist_timeout) and args.dist_timeout > 0):
        raise UserError(f"--dist-timeout must be a positive number of seconds; got {args.dist_timeout}")
    if args.workers < 0:
        raise UserError(f"--workers must be 0 or more; got {args.workers}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UserError(f"--lr must be a positive finite number; got {args.lr}")
    if min(args.crop) < 1:
        raise UserError(f"--crop must be two positive sizes H W; got {args.crop[0]} {args.crop[1]}")
    for option, path in (("--resume", args.resume), ("--init-checkpoint", args.init_checkpoint)):
        if path is not None and not os.path.isfile(path):
            raise UserError(f"{option} {path}: no such file")
    if args.overwrite and args.resume is not None:
        raise UserError("--overwrite starts a new run; it cannot go with --resume, which continues one")


#: What a run writes in --out.
_RUN_FILES = ("last.pt", "best.pt", "log.csv")
#: What --resume into a new --out copies there from the run's folder.
_CARRIED_FILES = ("log.csv", "best.pt")


def _check_out(args) -> None:
    """Checks --out before anything is made or read: a folder that can hold the run, or be made (a
    UserError saying why not). A new run must not land in a folder holding another (it would
    replace its checkpoints and mix the epochs of both in log.csv) unless --overwrite says so;
    --resume continues the run there."""
    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out} is a file, not a folder")
    present = [name for name in _RUN_FILES if os.path.exists(os.path.join(out, name))]
    if present and args.resume is None and not args.overwrite:
        last = os.path.join(out, "last.pt")
        resume = f"continue it with --resume {last}, " if "last.pt" in present else ""
        raise UserError(f"--out {out} already holds a run ({', '.join(present)}); {resume}"
                        f"pick another --out, or pass --overwrite to start afresh there")
    if present and args.resume is not None and not _resumes_in_place(args):
        # Continuing one run into the folder of another would mix their epochs in log.csv and
        # keep the other's best.pt unless this run beats it.
        raise UserError(f"--out {out} holds another run ({', '.join(present)}) than --resume {args.resume}; "
                        f"continue {args.resume}'s run in its own folder or in a new --out")
    existing, missing = os.path.abspath(out), []
    while not os.path.lexists(existing):
        existing, name = os.path.split(existing)
        missing.insert(0, name)
    if not os.path.isdir(existing):
        raise UserError(f"--out {out}: cannot create the folder ({os.strerror(errno.ENOTDIR)})")
    try:
        longest = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    # The folder's name, and OUT.lock beside it (the run's claim), must fit the file system.
    names = missing[:-1] + [os.path.basename(os.path.abspath(out)) + ".lock"]
    if any(len(os.fsencode(name)) > longest for name in names):
        raise UserError(f"--out {out}: cannot create the folder ({os.strerror(errno.ENAMETOOLONG)}: each name "
                        f"in it at most {longest} bytes, the last at most {longest - len('.lock')} here)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        where = "write files there" if not missing else f"create the folder in {existing}"
        raise UserError(f"--out {out}: cannot {where} ({error.strerror or error})") from None
    check_unclaimed(out, "a training run into it")


def _make_out(out: str) -> List[str]:
    """Makes --out (checked by :func:`_check_out`); returns the folders it made, outermost first,
    for :func:`remove_empty_folders` if the run ends before writing into them. A failure part
    way (a full disk, a folder made meanwhile as a file) leaves none of them."""
    made: List[str] = []
    missing = os.path.abspath(out)
    while not os.path.lexists(missing):
        made.insert(0, missing)
        missing = os.path.dirname(missing)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as error:
        remove_empty_folders(made)
        raise UserError(f"--out {out}: cannot create the folder ({error.strerror or error})") from None
    return made


def _run_folders(args) -> List[str]:
    """Where the run --resume continues may lie: beside the file named, or beside the file a link
    leads to (a link to a run's last.pt, or a run whose last.pt is a link)."""
    named = os.path.dirname(os.path.abspath(args.resume))
    real = os.path.dirname(os.path.realpath(args.resume))
    return [named] if os.path.samefile(named, real) else [named, real]


def _run_folder(args) -> str:
    """The folder of the run --resume continues: the first of :func:`_run_folders` holding its
    log.csv or best.pt (else the file's own folder)."""
    for folder in _run_folders(args):
        if any(os.path.isfile(os.path.join(folder, name)) for name in _CARRIED_FILES):
            return folder
    return _run_folders(args)[0]


def _resumes_in_place(args) -> bool:
    """Whether --resume names the last.pt of the run in --out, so that the run goes on where it was."""
    return os.path.isdir(args.out) and any(os.path.samefile(folder, args.out) for folder in _run_folders(args))


def _files_to_carry(args) -> List[str]:
    """The resumed run's log.csv and best.pt, those that lie beside its last.pt."""
    return [name for name in _CARRIED_FILES if os.path.isfile(os.path.join(_run_folder(args), name))]


def _carry_run_files(args, say) -> None:
    """Copies the resumed run's log.csv and best.pt into a new --out, so that the folder holds the
    whole run: every epoch's line and the best weights so far. Done once the first epoch there has
    validated: a start that fails or is stopped before leaves --out as it was, to try again."""
    carried = []
    for name in _files_to_carry(args):
        source = os.path.join(_run_folder(args), name)
        copy_file(source, os.path.join(args.out, name))
        carried.append(name)
    if carried:
        say(f"copied {' and '.join(carried)} of the resumed run from {_run_folder(args)} into {args.out}")


def append_log(path: str, row: dict) -> None:
    """Adds ``row`` to the CSV file ``path`` (with a header line when new), replacing the file
    atomically: a failure leaves the previous lines as they were."""
    try:
        with open(path, newline="") as handle:
            previous = handle.read()
    except FileNotFoundError:
        previous = ""
    except OSError as error:
        raise UserError(f"{path}: cannot read it ({os_reason(error)})") from None
    line = io.StringIO()
    writer = csv.DictWriter(line, fieldnames=list(row))
    if not previous:
        writer.writeheader()
    writer.writerow(row)
    write_file(path, (previous + line.getvalue()).encode())


def _train(args, cluster: Distributed) -> None:
    from tqdm import tqdm

    _check_args(args)
    if not os.path.isdir(args.data):
        raise UserError(f"{args.data}: no such folder")
    state = None
    if args.resume:
        # Checked before building anything: a last.pt of another variant fails to load with a
        # message that cannot say which --model it needs.
        state = read_training_state(args.resume)
        previous = state.get("config", {}).get("model")
        if previous not in (None, args.model):
            raise UserError(f"--resume {args.resume} was trained with --model {previous}; pass --model {previous}")
        if int(state["epoch"]) >= args.epochs:
            raise UserError(f"--resume {args.resume} has already done {int(state['epoch'])} epochs; "
                            f"pass --epochs above {int(state['epoch'])}")
    if not cluster.is_main:  # rank 0 alone touches --out
        _train_in(args, cluster, state, tqdm, lambda: None)
        return
    _check_out(args)
    made: List[str] = []
    try:
        with contextlib.ExitStack() as claimed:
            def make_out() -> None:
                made.extend(_make_out(args.out))
                claimed.enter_context(claim_folder(args.out, "a training run into it"))

            _train_in(args, cluster, state, tqdm, make_out)
    except BaseException:
        # A failure in the first epoch, Ctrl-C before its end: nothing of the run is in a folder
        # this run made, so it goes (with what is still being written, first).
        discard_pending()
        remove_empty_folders(made)
        raise


def _train_in(args, cluster: Distributed, state: Optional[dict], tqdm, make_out: Callable[[], None]) -> None:
    """Loads and checks the data and the model, then calls ``make_out`` (rank 0: makes and claims
    --out; nothing is made before) and trains."""
    device, main = cluster.device, cluster.is_main
    # Each process draws its own crops and flips; DDP starts every process from rank 0's weights.
    torch.manual_seed(args.seed + cluster.rank)
    say = (lambda message: None) if args.quiet or not main else (lambda message: print(message, file=sys.stderr))
    dataset, test_list, samples = ((VimeoSeptuplets, "sep_testlist.txt", "septuplets") if args.septuplets
                                   else (VimeoTriplets, "tri_testlist.txt", "triplets"))
    train_set = dataset(args.data, "train", crop=tuple(args.crop), augment=True)
    val_set = dataset(args.data, "test", limit=args.val_limit)
    if not val_set.from_list:
        say(f"note: {args.data} has no {test_list}; validating on the training {samples}")
    # Every file, before the first step: a broken validation image must not wait for an epoch.
    train_set.check_files()
    val_set.check_files()

    # Each process trains on its share of one permutation per epoch, and validates every
    # world_size-th sample: the sums of all processes make the whole set's means.
    train_sampler = training_sampler(train_set, cluster, args.seed)
    loader_options = dict(num_workers=args.workers, pin_memory=device.type == "cuda",
                          persistent_workers=args.workers > 0)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, sampler=train_sampler, drop_last=False,
                              **loader_options)
    val_loader = DataLoader(val_set, batch_size=1, sampler=ShardSampler(len(val_set), cluster.rank, cluster.world_size),
                            **loader_options)

    model = wrap_model(build_model(args.model, args.init_checkpoint).to(device), cluster)
    bare = bare_model(model)  # what checkpoints hold: no DDP "module." prefix
    optimizer = build_optimizer(bare, args.lr)
    scheduler = build_scheduler(optimizer)
    base_lr = optimizer.param_groups[0]["lr"]
    amp = amp_dtype(device, args.amp)
    scaler = grad_scaler(device, amp)
    epoch, best_psnr = 0, -math.inf
    if state is not None:
        restore_training_state(args.resume, state, bare, optimizer, scheduler, scaler)
        epoch, best_psnr = int(state["epoch"]), float(state.get("best_psnr", -math.inf))
        base_lr = LEARNING_RATES[optimizer.param_groups[0]["name"]] * float(state.get("config", {}).get("lr", args.lr))
        say(f"resumed from {args.resume} after epoch {epoch} (best PSNR {best_psnr:.2f} dB)")
    if cluster.is_distributed:
        say(f"training in {cluster.world_size} processes ({cluster.backend} on {device.type}): global batch "
            f"{cluster.world_size} x {args.batch_size} = {cluster.world_size * args.batch_size}")
    if amp is not None:
        say(f"--amp: {str(amp).replace('torch.', '')} autocast on {device.type}"
            + (" with a gradient scaler" if scaler.is_enabled() else ""))

    carry = main and bool(args.resume) and not _resumes_in_place(args)
    if carry:
        missing = [name for name in _CARRIED_FILES if name not in _files_to_carry(args)]
        if "best.pt" in missing and math.isfinite(best_psnr):
            say(f"note: no best.pt beside {args.resume}: {os.path.join(args.out, 'best.pt')} is written when an "
                f"epoch beats its best validation PSNR ({best_psnr:.2f} dB)")
        if "log.csv" in missing:
            say(f"note: no log.csv beside {args.resume}: {os.path.join(args.out, 'log.csv')} starts at epoch "
                f"{epoch + 1}")
    make_out()
    if args.overwrite and main:
        # Only now, once everything has loaded: a failed start leaves the old run as it was.
        for name in _RUN_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(args.out, name))
    config = {key: (list(value) if isinstance(value, tuple) else value) for key, value in vars(args).items()}
    config["processes"] = cluster.world_size
    last_path = os.path.join(args.out, "last.pt")
    # Where training can continue from, and after which epoch: for the message when stopped.
    saved, saved_epoch = args.resume, epoch
    try:
        for epoch in range(epoch + 1, args.epochs + 1):
            start = time.perf_counter()
            # The epoch's permutation comes from --seed and the epoch: a resumed run goes on with
            # the permutations the whole run would have used, in any number of processes.
            train_sampler.set_epoch(epoch)
            steps = len(train_loader) if args.max_steps is None else min(args.max_steps, len(train_loader))
            with tqdm(total=steps, desc=f"epoch {epoch}/{args.epochs}", unit="step", disable=args.quiet or not main,
                      dynamic_ncols=True) as bar:
                so_far: List[float] = []

                def on_step(loss: float) -> None:
                    so_far.append(loss)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", mean=f"{np.mean(so_far):.4f}")

                try:
                    losses = train_epoch(model, optimizer, itertools.islice(train_loader, steps), device, amp,
                                         scaler, on_step)
                except FloatingPointError as error:
                    raise UserError(str(error)) from None
            # Validation runs the bare model: the processes' shares differ in size, and DDP's
            # forward could wait on a process that has finished its share.
            loss_sum, count = all_reduce_sums([sum(losses), len(losses)], cluster)
            train_loss = loss_sum / count
            val_loss_sum, val_psnr_sum, val_count = all_reduce_sums(
                validation_sums(bare, val_loader, device, amp, progress=main and not args.quiet), cluster)
            val_loss, val_psnr = val_loss_sum / val_count, val_psnr_sum / val_count
            if not math.isfinite(val_loss):
                # The last step made the weights non-finite: keep last.pt at the previous epoch.
                raise UserError(f"the validation loss after epoch {epoch} is {val_loss}; lower --lr or turn off --amp")
            if carry:
                _carry_run_files(args, say)
                carry = False
            scheduler.step(val_loss)  # the same loss in every process: their schedules stay equal
            improved = val_psnr > best_psnr
            if improved:
                best_psnr = val_psnr
            if main:
                if improved:
                    save_weights(os.path.join(args.out, "best.pt"), bare)
                save_training_state(last_path, bare, optimizer, scheduler, epoch, config, best_psnr, scaler)
                seconds = time.perf_counter() - start
                append_log(os.path.join(args.out, "log.csv"), {
                    "epoch": epoch, "steps": len(losses), "train_loss": f"{train_loss:.6f}",
                    "val_loss": f"{val_loss:.6f}", "val_psnr": f"{val_psnr:.4f}",
                    "lr_factor": f"{optimizer.param_groups[0]['lr'] / base_lr:.6g}", "seconds": f"{seconds:.1f}",
                })
                say(f"epoch {epoch}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
                    f"val PSNR {val_psnr:.2f} dB{' (best)' if improved else ''}, {seconds:.0f} s")
            saved, saved_epoch = last_path, epoch
    except BaseException as error:
        # Stopped: by a signal here, or because another process stopped (its notice interrupts
        # this one, or the collective this one waits in fails).
        peer = cluster.peer_stop()
        if not isinstance(error, KeyboardInterrupt) and peer is None:
            raise
        signum = signal_number(error) if isinstance(error, KeyboardInterrupt) else signal.SIGINT
        how = Interrupted(signum).describe()
        if saved is None:
            raise Interrupted(signum, f"{how} in epoch {epoch}; no epoch finished yet, so nothing was saved") from None
        raise Interrupted(signum, f"{how} in epoch {epoch}; {saved} holds epoch {saved_epoch}: "
                          f"continue with --resume {saved}") from None


#: Seconds a process may take to stop once it or another process failed or was interrupted.
STOP_GRACE = 30.0
#: This process's place in the run, once :func:`_start` has joined it (for :func:`main`).
_cluster = Distributed()


def _stop_together(cluster: Distributed, error: BaseException) -> int:
    """Tells the other processes that this one stops, and decides who reports it: the first
    process that failed says why (naming its rank); on Ctrl-C, rank 0 says what was saved.
    Returns the exit status of a process that stays silent, or raises for :func:`run` to report."""
    interrupted = isinstance(error, KeyboardInterrupt)
    code = 128 + signal_number(error) if interrupted else 1
    exit_within(STOP_GRACE, code)
    cause = cluster.announce_stop("interrupted" if interrupted else "failed", str(error).strip().split("\n")[-1])
    if cause is not None and cause.reason == "failed":
        return 1  # another process failed first, and says why
    if interrupted:
        if cluster.is_main:
            raise error
        return code
    if isinstance(error, UserError):
        raise UserError(f"process {cluster.rank} of {cluster.world_size}: {user_message(error)}") from None
    raise error


def _start(argv: Optional[Sequence[str]]) -> int:
    global _cluster
    args = _parser().parse_args(argv)
    try:
        _cluster = init_distributed(pick_device(args.device), timeout=args.dist_timeout)
    except DistributedError as error:
        raise UserError(str(error)) from None
    if not _cluster.is_distributed:
        _train(args, _cluster)
        return 0
    try:
        _train(args, _cluster)
        close_distributed(_cluster)
    except BaseException as error:
        return _stop_together(_cluster, error)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    code = run(_start, PROG, argv)
    if _cluster.is_distributed and code != 0:
        # Leaving a process group whose other processes are gone can block: end here, the
        # line said and the outputs being written removed (by run).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
