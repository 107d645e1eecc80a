"""Run a loss sweep on a Ray cluster (``compare_losses.py --executor ray``): one Ray task per (loss, seed).

    from boxloss.engine.sweep_ray import run_ray
    outcomes = run_ray(cfg, runs, "/shared/runs/cmp", address="auto", cpus_per_run=4, gpus_per_run=1)
    # {("giou", 0): {"status": "done", "attempts": 1, "host": "node3", "seconds": 812.0, "error": None}, ...}

Each task is ``run_sweep(cfg, [(loss, seed)], out_dir)`` on whichever node Ray picks, so a run trains,
resumes, locks and evaluates exactly as in a local sweep, into the same ``<loss>/seed<k>/`` folders;
the output folder must therefore be shared storage (NFS) mounted at the same path on every node. The
driver (the ``compare_losses.py`` process) only schedules, prints progress and, once every run is
finished, writes the report (``build_report``) as a local sweep does.

- Resources: each task reserves ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs (Ray sets
  ``CUDA_VISIBLE_DEVICES``), and the run's ``train.threads`` is ``cpus_per_run`` unless the config sets
  it. ``train.progress`` is off in the tasks: the driver prints ``sweep_progress.format_progress``.
- Resumable: runs whose ``result.json`` exists are checked (``check_reusable``) and skipped by the driver
  without starting a task; the others resume from their ``checkpoint_last.pt`` inside ``run_sweep``.
- A worker that dies (killed, out of memory, its node lost) is retried by Ray up to ``max_retries``
  times; the retry resumes from the last checkpoint. An exception raised by training or evaluation is
  not retried (it would fail again the same way): the run is reported as failed with its error while
  the other runs go on.
- Locks: ``sweep.acquire_lock`` takes over a lock left by a dead process of its own host only. A Ray
  worker killed on one node leaves a ``.lock`` naming that node, and its retry (or the task of a
  restarted sweep) may land on another. So each task also writes ``.ray_attempt.json`` (its lock owner,
  Ray node and task id) beside the lock while it holds it; a task finding a lock whose owner is the one
  recorded there takes it over when that node has left the cluster or the process is gone from it
  (asked by a task pinned to that node). Locks of processes that are not Ray tasks are left alone.

Ray is optional (``pip install 'boxloss[ray]'``): it is imported when ``run_ray`` is called, never at
import time.
"""

from __future__ import annotations

import copy
import json
import math
import os
import socket
import time
from pathlib import Path

from .sweep import _pid_alive, acquire_lock, check_reusable, release_lock, run_config, run_dir, run_state, run_sweep

RAY_EXTRA = "pip install 'boxloss[ray]'"
ATTEMPT = ".ray_attempt.json"
PROBE_TIMEOUT_S = 60.0
# The environment variable of the raylet that sets its workers' niceness (Ray's default: 15).
WORKER_NICENESS = "RAY_worker_niceness"


class RayNotInstalled(ImportError):
    """``--executor ray`` without the ``ray`` package."""


def import_ray():
    """The ``ray`` module, or ``RayNotInstalled`` with a one-line message naming the extra."""
    try:
        import ray
    except ImportError:
        raise RayNotInstalled(f"--executor ray needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


# --- inside a task --------------------------------------------------------------------------------


def _read_attempt(directory) -> dict:
    try:
        return json.loads((Path(directory) / ATTEMPT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _pid_alive_here(pid: int) -> bool:
    return _pid_alive(pid)


def _take_over_stale_lock(ray, directory) -> bool:
    """Remove ``directory/.lock`` if it was left by a Ray task whose process is gone; True if removed.

    Only a lock whose owner (pid@host) is the one recorded in ``.ray_attempt.json`` is considered; locks of
    this host are left to ``acquire_lock``, which checks their pid itself.
    """
    d = Path(directory)
    lock, info = d / ".lock", _read_attempt(d)
    try:
        owner = lock.read_text().strip()
    except OSError:
        return False
    pid, _, host = owner.partition("@")
    if not owner or owner != info.get("owner") or host == socket.gethostname() or not pid.isdigit():
        return False
    node = info.get("node")
    if node in {n["NodeID"] for n in ray.nodes() if n.get("Alive")}:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = ray.remote(_pid_alive_here).options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False))
        try:
            if ray.get(probe.remote(int(pid)), timeout=PROBE_TIMEOUT_S):
                return False  # still training there
        except Exception:  # noqa: BLE001 - the node did not answer: leave the lock, the run is reported "locked"
            return False
    if lock.is_file() and lock.read_text().strip() == owner:
        lock.unlink(missing_ok=True)
        return True
    return False


def _run_one(cfg: dict, loss: str, seed: int, out_dir: str, backend: str, coco_gt, train_fn, cwd: str) -> dict:
    """One run, in a Ray worker: ``run_sweep`` on ``[(loss, seed)]``, so that training, resume, locks and
    evaluation are those of a local sweep. Returns ``{"status", "attempts", "host", "seconds", "owner"}``;
    ``status`` is run_sweep's ("done", "evaluated", "reused", "locked")."""
    import ray

    here = os.getcwd()
    if os.path.isdir(cwd):  # the driver's folder: relative paths of the config mean the same here
        os.chdir(cwd)
    try:
        ctx = ray.get_runtime_context()
        d = run_dir(out_dir, loss, seed)
        d.mkdir(parents=True, exist_ok=True)
        task = ctx.get_task_id()
        before = _read_attempt(d)
        # Ray keeps a task's id across its retries: the same id here means an earlier attempt died.
        attempts = int(before.get("attempts", 1)) + 1 if before.get("task") == task else 1
        _take_over_stale_lock(ray, d)
        t0 = time.time()
        if not acquire_lock(d):
            try:
                owner = (d / ".lock").read_text().strip()
            except OSError:
                owner = None
            return {"status": "locked", "attempts": attempts, "host": socket.gethostname(), "seconds": 0.0,
                    "owner": owner}
        me = f"{os.getpid()}@{socket.gethostname()}"
        record = {"owner": me, "node": ctx.get_node_id(), "task": task, "attempts": attempts}
        tmp = d / f"{ATTEMPT}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
        tmp.replace(d / ATTEMPT)
        try:
            # run_sweep's own acquire_lock finds our lock (same pid@host) and goes on
            status = run_sweep(cfg, [(loss, seed)], out_dir, coco_gt=coco_gt, backend=backend, train_fn=train_fn,
                               log=lambda msg: print(msg, flush=True))[loss, seed]
        finally:
            if _read_attempt(d).get("owner") == me:
                (d / ATTEMPT).unlink(missing_ok=True)
            release_lock(d)
        return {"status": status, "attempts": attempts, "host": socket.gethostname(), "seconds": time.time() - t0,
                "owner": None}
    finally:
        os.chdir(here)


# --- the driver -------------------------------------------------------------------------------------


def _failure(ray, err, max_retries: int) -> dict:
    """The outcome of a task whose ``ray.get`` raised."""
    if isinstance(err, ray.exceptions.RayTaskError):  # raised by the run itself: not retried
        cause = getattr(err, "cause", None)
        text = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else str(err).strip().splitlines()[-1]
        return {"status": "failed", "attempts": None, "error": text}
    first = (str(err).strip().splitlines() or [""])[0]
    return {"status": "failed", "attempts": max_retries + 1,
            "error": f"{type(err).__name__}: the worker died in each of {max_retries + 1} attempt(s): {first[:300]}"}


def _capacity(nodes, cpus_per_run: int, gpus_per_run: float) -> int:
    """How many runs the alive nodes can train at once (0: no node fits one run)."""
    total = 0
    for n in nodes:
        res = n.get("Resources", {})
        fit = math.floor(res.get("CPU", 0) / cpus_per_run + 1e-9)
        if gpus_per_run > 0:
            fit = min(fit, math.floor(res.get("GPU", 0) / gpus_per_run + 1e-9))
        total += fit
    return total


def run_ray(cfg: dict, runs, out_dir, *, backend: str = "hotcoco", address: str | None = None, cpus_per_run: int = 1,
            gpus_per_run: float = 0.0, max_retries: int = 2, coco_gt=None, train_fn=None, progress=None,
            poll_s: float = 5.0, log=print) -> dict:
    """Train and evaluate every run of ``runs`` that is not done yet, one Ray task each; wait for all.

    Args:
        cfg, runs, out_dir, backend, coco_gt, train_fn: as ``sweep.run_sweep`` (``train_fn`` and
            ``coco_gt`` are sent to the workers).
        address: the Ray cluster (``"auto"``: the one ``ray start`` joined on this machine; ``"HOST:6379"``);
            None: ``$RAY_ADDRESS``, else a new Ray instance on this machine, stopped at the end. An already
            initialised Ray is used as it is.
        cpus_per_run, gpus_per_run: resources each task reserves; ``train.threads`` = ``cpus_per_run``
            unless the config sets it.
        max_retries: retries of a run whose worker dies (exceptions raised by the run are not retried).
        progress: optional ``fn(parallel) -> str`` (e.g. a ``format_progress`` block); polled every
            ``poll_s`` seconds and logged when it changes.

    Returns:
        ``{(loss, seed): {"status", "attempts", "host", "seconds", "error", "owner"}}``: ``status`` is
        "reused" (finished before, no task started), "done", "evaluated", "locked" (another process holds
        the run folder; ``owner`` names it) or "failed" (``error`` says why).
    """
    ray = import_ray()
    if not (isinstance(cpus_per_run, int) and cpus_per_run >= 1):
        raise ValueError(f"--cpus-per-run {cpus_per_run}: expected an integer >= 1")
    if not gpus_per_run >= 0:
        raise ValueError(f"--gpus-per-run {gpus_per_run}: expected a number >= 0")
    if not (isinstance(max_retries, int) and max_retries >= 0):
        raise ValueError(f"--max-retries {max_retries}: expected an integer >= 0")
    run_sweep(cfg, [], out_dir)  # nothing to run: only its checks of the config (e.g. train.eval_every)
    cfg = copy.deepcopy(cfg)
    cfg.setdefault("train", {})["progress"] = False  # no tqdm bars from the workers: the driver prints progress
    if not cfg["train"].get("threads"):
        cfg["train"]["threads"] = cpus_per_run
    epochs = cfg["train"].get("epochs")
    outcomes, todo = {}, []
    for loss, seed in runs:
        d = run_dir(out_dir, loss, seed)
        if run_state(d, epochs) == "done":  # finished before: no task (as run_sweep, which would reuse it)
            check_reusable(d, run_config(cfg, loss, seed, d))
            outcomes[loss, seed] = {"status": "reused", "attempts": 0, "host": None, "seconds": 0.0, "error": None,
                                    "owner": None}
            log(f"[sweep] {loss} seed {seed}: done, reused ({d})")
        else:
            todo.append((loss, seed))
    if not todo:
        return outcomes

    started = not ray.is_initialized()
    # "local": a new instance, not Ray's own default of joining the last cluster `ray start` ran here (which
    # hangs, retrying, when that cluster ended without `ray stop`); `--ray-address auto` joins that one.
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if started:
        t0 = time.time()
        # Ray starts its workers at niceness 15: on a machine that also runs other work (a second sweep,
        # a training), the runs then get a fraction of the CPU (imports alone took 10x longer, measured).
        # An instance started here for this sweep runs them at the driver's priority, as --jobs does.
        own_instance = address == "local" and WORKER_NICENESS not in os.environ
        if own_instance:
            os.environ[WORKER_NICENESS] = str(os.nice(0))
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=True)
        except ConnectionError as err:
            raise RuntimeError(f"--ray-address {address}: {err}") from None
        finally:
            if own_instance:
                del os.environ[WORKER_NICENESS]
        log(f"[sweep] Ray {'started here' if address == 'local' else 'joined at ' + address} in {time.time() - t0:.1f} s")
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        parallel = _capacity(nodes, cpus_per_run, gpus_per_run)
        if parallel == 0:
            msg = (f"no node of the Ray cluster has {cpus_per_run} CPU(s) and {gpus_per_run:g} GPU(s) for one run "
                   f"(--cpus-per-run, --gpus-per-run; nodes: "
                   + ", ".join(f"{n.get('NodeManagerHostname')} {n['Resources'].get('CPU', 0):g} CPU "
                               f"{n['Resources'].get('GPU', 0):g} GPU" for n in nodes) + ")")
            if started and address == "local":
                raise ValueError(msg)  # the instance started for this sweep: no node will join it
            log(f"[sweep] warning: {msg}; the runs wait until such a node joins")
        task = ray.remote(_run_one)
        options = dict(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=max_retries, retry_exceptions=False,
                       # workers on other nodes do not inherit this machine's environment (boxloss/cli/__init__.py)
                       runtime_env={"env_vars": {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}})
        cwd = os.getcwd()
        pending = {task.options(**options, name=f"boxloss {loss} seed {seed}").remote(
                       cfg, loss, seed, os.fspath(out_dir), backend, coco_gt, train_fn, cwd): (loss, seed)
                   for loss, seed in todo}
        log(f"[sweep] Ray: {len(pending)} run(s) submitted, {cpus_per_run} CPU(s) and {gpus_per_run:g} GPU(s) each, "
            f"up to {parallel} at a time on {len(nodes)} node(s); a run whose worker dies is retried up to "
            f"{max_retries} time(s)")
        last = None
        while pending:
            status = progress(max(parallel, 1)) if progress else None
            if status is not None and status != last:
                log(f"[sweep] {status}")
                last = status
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll_s)
            for ref in ready:
                loss, seed = pending.pop(ref)
                try:
                    out = {"error": None, **ray.get(ref)}
                except ray.exceptions.RayError as err:
                    out = {"host": None, "seconds": None, "owner": None, **_failure(ray, err, max_retries)}
                outcomes[loss, seed] = out
                retries = (out.get("attempts") or 1) - 1
                retried = f" after {retries} retr{'y' if retries == 1 else 'ies'} (its worker died)" if retries else ""
                if out["status"] == "failed":
                    log(f"[sweep] {loss} seed {seed}: FAILED: {out['error']}")
                elif out["status"] == "locked":
                    log(f"[sweep] {loss} seed {seed}: another process holds {run_dir(out_dir, loss, seed) / '.lock'} "
                        f"({out['owner']}), skipped")
                else:
                    log(f"[sweep] {loss} seed {seed}: {out['status']} on {out['host']} in {out['seconds']:.0f} s{retried}")
        status = progress(max(parallel, 1)) if progress else None
        if status is not None and status != last:
            log(f"[sweep] {status}")
    finally:
        if started:
            ray.shutdown()
    return outcomes
