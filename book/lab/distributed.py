"""Data-parallel training: a from-scratch simulation, real PyTorch DDP under ``torchrun``, and ZeRO arithmetic.

* ``simulate_data_parallel`` splits a batch over N simulated workers, averages their gradients (what an
  all-reduce does) and shows it equals the full-batch gradient.
* ``ring_allreduce`` is the communication pattern behind NCCL's all-reduce, written with plain tensors.
* ``python -m torch.distributed.run --nproc_per_node 2 -m book.lab.distributed --out result.pt`` trains a small
  MLP with ``DistributedDataParallel`` (gloo on CPU, NCCL on GPUs); ``train_single`` trains the same model on
  the same global batches in one process, and ``launch`` runs the former from a notebook.
* ``zero_memory`` is the per-GPU memory model of ZeRO stages 0-3 (Rajbhandari et al., 2020).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


# --------------------------------------------------------------------------- the model and data of the demo
def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))


def global_batches(n_train: int, steps: int, batch: int, seed: int = 0) -> torch.Tensor:
    """Indices (steps, batch) of the training examples in each global batch: the same for every process."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(n_train, generator=g)[:batch] for _ in range(steps)])


def shard(indices: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """The part of one global batch that worker ``rank`` of ``world`` processes (contiguous, equal shares)."""
    if len(indices) % world:
        raise ValueError(f"a global batch of {len(indices)} cannot be split evenly over {world} workers; "
                         f"choose a batch size divisible by {world}")
    per = len(indices) // world
    return indices[rank * per:(rank + 1) * per]


def train_single(x, y, steps: int, batch: int, lr: float = 0.1, seed: int = 0):
    """One process, full global batches, plain SGD. Returns ``(model, losses, first_grads)``."""
    model = make_model(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses, first = [], None
    for idx in global_batches(len(x), steps, batch, seed):
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        if first is None:
            first = [p.grad.detach().clone() for p in model.parameters()]
        opt.step()
        losses.append(loss.item())
    return model, losses, first


# --------------------------------------------------------------------------- from scratch, in one process
def simulate_data_parallel(model: nn.Module, x, y, n_workers: int, loss_fn=F.cross_entropy) -> list[torch.Tensor]:
    """Gradients as N data-parallel workers would end up with them: each computes the mean loss on its shard,
    then the gradients are averaged (all-reduce sum / N). Equal to the full-batch gradient for equal shards."""
    idx = torch.arange(len(x))
    per_worker = []
    for rank in range(n_workers):
        s = shard(idx, rank, n_workers)
        model.zero_grad()
        loss_fn(model(x[s]), y[s]).backward()
        per_worker.append([p.grad.detach().clone() for p in model.parameters()])
    model.zero_grad()
    return [torch.stack(gs).mean(0) for gs in zip(*per_worker)]


def ring_allreduce(chunks_per_worker: list[torch.Tensor]) -> tuple[list[torch.Tensor], int]:
    """Sum N equal-length vectors held by N workers with the ring algorithm; returns (results, elements sent
    per worker). Each vector is cut into N pieces; N-1 reduce-scatter steps leave worker i with the full sum
    of piece (i+1) mod N; N-1 all-gather steps pass the finished pieces around the ring."""
    n = len(chunks_per_worker)
    if n < 2:
        return [c.clone() for c in chunks_per_worker], 0
    length = chunks_per_worker[0].numel()
    if any(c.numel() != length for c in chunks_per_worker) or length % n:
        raise ValueError(f"need {n} vectors of equal length divisible by {n}")
    buf = [list(c.clone().view(n, -1)) for c in chunks_per_worker]      # buf[worker][piece]
    sent = 0
    for step in range(n - 1):                                           # reduce-scatter
        msgs = [(w, (w - step) % n, buf[w][(w - step) % n].clone()) for w in range(n)]
        for w, piece, data in msgs:
            buf[(w + 1) % n][piece] += data
        sent += length // n
    for step in range(n - 1):                                           # all-gather
        msgs = [(w, (w + 1 - step) % n, buf[w][(w + 1 - step) % n].clone()) for w in range(n)]
        for w, piece, data in msgs:
            buf[(w + 1) % n][piece] = data
        sent += length // n
    return [torch.cat(b) for b in buf], sent


# --------------------------------------------------------------------------- ZeRO memory model
def zero_memory(n_params: float, n_gpus: int, stage: int, k_optimizer: int = 12) -> dict:
    """Bytes per GPU for mixed-precision Adam training under ZeRO ``stage`` (0 = plain data parallelism).

    Per parameter: 2 bytes of fp16/bf16 weights, 2 of fp16/bf16 gradients and ``k_optimizer`` = 12 bytes of
    optimizer state (fp32 master weights, momentum and variance). Stage 1 shards the optimizer state over
    the GPUs, stage 2 also the gradients, stage 3 also the weights (PyTorch's FSDP "full shard")."""
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage must be 0, 1, 2 or 3, got {stage}")
    if n_gpus < 1:
        raise ValueError(f"n_gpus must be >= 1, got {n_gpus}")
    p, g, o = 2.0 * n_params, 2.0 * n_params, float(k_optimizer) * n_params
    if stage >= 1:
        o /= n_gpus
    if stage >= 2:
        g /= n_gpus
    if stage >= 3:
        p /= n_gpus
    return {"weights": p, "gradients": g, "optimizer": o, "total": p + g + o}


# --------------------------------------------------------------------------- the torchrun script
def default_backend(nproc: int) -> str:
    """NCCL when there is one CUDA GPU per process (NCCL cannot put two ranks on one GPU), else gloo on CPU."""
    return "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= nproc else "gloo"


def _worker(args) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from book.data import load_mnist

    backend = args.backend or default_backend(int(os.environ.get("WORLD_SIZE", 1)))
    cuda = backend == "nccl"
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}") if cuda else torch.device("cpu")
    data = load_mnist(n_train=args.n_train)
    x, y = data.x_train.to(device), data.y_train.to(device)
    model = make_model(args.seed).to(device)          # same seed -> same start; DDP also broadcasts rank 0's
    ddp = DDP(model, device_ids=[device.index] if cuda else None)
    opt = torch.optim.SGD(ddp.parameters(), lr=args.lr)
    first = None
    for step, idx in enumerate(global_batches(len(x), args.steps, args.batch, args.seed)):
        mine = shard(idx, rank, world).to(device)
        loss = F.cross_entropy(ddp(x[mine]), y[mine])
        opt.zero_grad()
        loss.backward()                                # DDP all-reduces (averages) the gradients here
        if first is None:
            first = [p.grad.detach().cpu().clone() for p in model.parameters()]
        opt.step()
        full = loss.detach().clone()
        dist.all_reduce(full)                          # for the log: mean loss over the global batch
        if rank == 0 and (step % args.log_every == 0 or step == args.steps - 1):
            print(f"step {step} loss {full.item() / world:.5f}", flush=True)
    if rank == 0:
        torch.save({"state": {k: v.cpu() for k, v in model.state_dict().items()}, "first_grads": first,
                    "world": world, "backend": backend}, args.out)
    # everyone waits for rank 0's save: a rank that tears the group down while another still uses it
    # aborts with gloo on torch 2.11 (seen with Python 3.13, Colab's versions)
    dist.barrier()
    dist.destroy_process_group()


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Data-parallel training of a small MNIST MLP with DDP (run under torchrun).")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch", type=int, default=64, help="global batch (split over the processes)")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--backend", default=None, choices=("gloo", "nccl"),
                   help="default: nccl with one GPU per process, else gloo")
    args = p.parse_args(argv)
    if "RANK" not in os.environ:
        sys.exit("run me under torchrun: "
                 "python -m torch.distributed.run --nproc_per_node 2 -m book.lab.distributed --out r.pt")
    _worker(args)


def launch(nproc: int, out, on_line=None, timeout: float = 300, tries: int = 2, **kwargs) -> dict:
    """Run ``main`` under torchrun with ``nproc`` processes from Python (e.g. a notebook) and return the result.

    ``on_line(str)`` receives each line rank 0 prints, while training runs (for live plots). A run whose
    processes die is started again, up to ``tries`` runs in all, saying so: on a loaded 2-core machine a
    gloo rank has been seen to abort (SIGABRT, no message; once in about 25 runs); the retry runs the
    same deterministic computation from the start, so the result is unchanged."""
    for attempt in range(1, tries + 1):
        try:
            return _launch_once(nproc, out, on_line, timeout, **kwargs)
        except RuntimeError as e:
            if attempt == tries:
                raise
            print(f"torchrun failed (run {attempt} of {tries}), starting again; its last lines:\n{e}")
    raise AssertionError("unreachable")


def _launch_once(nproc: int, out, on_line, timeout: float, **kwargs) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "book.lab.distributed", "--out", str(out)]
    for k, v in kwargs.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        if on_line is not None and line.startswith("step "):
            on_line(line.rstrip())
    code = proc.wait(timeout=timeout)
    if code != 0:
        raise RuntimeError(f"torchrun exited with {code}:\n" + "\n".join(lines[-30:]))
    return torch.load(out, weights_only=True)


if __name__ == "__main__":
    main()
