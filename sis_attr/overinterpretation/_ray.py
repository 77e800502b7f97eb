"""``backend="ray"``: the shards of a backward selection as Ray tasks (private; ``pip install 'sis-attr[ray]'``).

The driver reads the data shard by shard (as the local backend does), sends each unfinished shard's images to
a task, and writes each result to the same shard store as it arrives, so a Ray run and a local run resume each
other. Each task takes one CPU, and one GPU when the cluster has GPUs (the task then runs the model on it). A
task whose worker dies (a killed process, a lost node) is retried by Ray (``max_retries``); an error of the
model itself is not retried and ends the run with that error. At most two tasks per worker are in flight, so
the driver holds a bounded number of shards in memory.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from sis_attr.exceptions import SISValueError

if TYPE_CHECKING:
    from sis_attr.overinterpretation.selection import _Run

__all__: list[str] = []

MAX_RETRIES = 3
"""Retries of a task whose worker died (Ray's ``max_retries``)."""


def import_ray(caller: str) -> Any:
    """The ``ray`` module, or an error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise SISValueError(
            f'The `backend` "ray" of {caller} needs Ray: pip install "sis-attr[ray]" (or pip install ray).'
        ) from None
    return ray


def _by_value(model: nn.Module, ray: Any) -> None:
    """Let Ray ship the code of models defined in modules its workers cannot import (a file, ``__main__``)."""
    for module in model.modules():
        name = type(module).__module__
        if name in sys.modules and (name == "__main__" or _not_importable(name)):
            ray.cloudpickle.register_pickle_by_value(sys.modules[name])


def _not_importable(name: str) -> bool:
    """Whether a fresh process could not import ``name`` from ``sys.path`` (a module loaded from a file path, such
    as ``sis-attr audit --model file.py:build``'s, or one made at run time)."""
    top = name.split(".")[0]
    if top in sys.builtin_module_names:
        return False
    try:
        return importlib.machinery.PathFinder.find_spec(top, sys.path) is None
    except (ImportError, ValueError):
        return True


def _shard_on_worker(
    model: nn.Module,
    images: Tensor,
    targets: Tensor | None,
    baselines: float | Tensor,
    task: Any,
    first_example: int,
) -> tuple[dict[str, np.ndarray], float, int]:
    """Run on a Ray worker: the model on the task's GPU if it has one, then one shard; ``(arrays, seconds, pid)``."""
    from sis_attr.overinterpretation.selection import _compute_shard

    tick = time.perf_counter()
    if torch.cuda.is_available() and os.environ.get("CUDA_VISIBLE_DEVICES", "") not in ("", "-1"):
        model = model.to("cuda")
    arrays = _compute_shard(model, images, targets, baselines, task, first_example)
    return arrays, time.perf_counter() - tick, os.getpid()


def run_shards(
    run: _Run,
    jobs: Iterator[tuple[int, Tensor, str]],
    finish: Callable[[int, dict[str, np.ndarray], str, float], None],
    bar: Any,
) -> None:
    """Compute ``jobs`` (shard index, images, data hash) as Ray tasks and ``finish`` each as it completes."""
    caller = run.task.caller
    ray = import_ray(caller)
    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        workers = max(1, gpus if gpus else int(resources.get("CPU", 1)))
        remote = ray.remote(_shard_on_worker).options(
            num_cpus=1, num_gpus=1 if gpus else 0, max_retries=MAX_RETRIES, retry_exceptions=False
        )
        model = run.model
        if any(p.device.type != "cpu" for p in model.parameters()):
            import copy

            model = copy.deepcopy(model).cpu()  # workers move it to their own GPU
        _by_value(model, ray)
        model_ref = ray.put(model)
        bar.set_postfix_str(f"{workers} Ray worker{'s' if workers > 1 else ''}")
        pending: dict[Any, tuple[int, str]] = {}
        bounds = run.bounds

        def collect(block: bool) -> None:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=None if block else 0)
            for ref in ready:
                i, digest = pending.pop(ref)
                try:
                    arrays, seconds, _pid = ray.get(ref)
                except ray.exceptions.RayTaskError as err:
                    cause = getattr(err, "cause", None)
                    raise (cause if isinstance(cause, BaseException) else err) from None
                finish(i, arrays, digest, seconds)
                start, stop = bounds[i]
                bar.update(stop - start)

        try:
            for i, images, digest in jobs:
                while len(pending) >= 2 * workers:
                    collect(block=True)
                start, stop = bounds[i]
                targets = None if run.targets is None else run.targets[start:stop]
                base = run.shard_baselines(start, stop)
                base = base if isinstance(base, float) else base.cpu()  # tasks move what they need to their GPU
                ref = remote.remote(model_ref, images.cpu(), targets, base, run.task, start)
                pending[ref] = (i, digest)
            while pending:
                collect(block=True)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()
