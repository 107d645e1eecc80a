"""Which box loss should my detector use, on my data? Train one detector per (loss, seed) with
everything else identical, evaluate each (COCO mAP), and write a report with tables and plots.

    boxloss-compare --config configs/quick.yaml --losses smooth_l1,iou,giou,diou,ciou --seeds 3 \\
        --output-dir runs/compare
    boxloss-compare --config configs/default.yaml --train-ann A.json --train-images imgs/ \\
        --val-ann B.json --val-images imgs/ --output-dir runs/mydata

(``python scripts/compare_losses.py`` and ``python -m boxloss.cli.compare`` are the same command.)

Writes into --output-dir: one engine run folder per ``<loss>/seed<k>/``, then ``report.md``, ``report.json``,
``report.csv`` and PNG plots; prints the answer: every loss against a baseline (``--baseline``, default the
first loss), paired by seed, with seed-level and image-level (bootstrap) confidence intervals, a Holm
correction and a verdict ("better" / "worse" / "not established", with the seeds a decision would need),
then where the differences come from (AP per IoU threshold, TIDE errors, IoU of true positives).
docs/protocol.md, "Verdicts", has the rule.

Compare whole recipes, not only box losses: ``--variant NAME:KEY=VALUE[,KEY=VALUE...]`` names a config change
that is run and reported like a loss (the config plus its changes), e.g. CIoU with and without DFL::

    python scripts/compare_losses.py --config configs/default.yaml --seeds 3 --losses ciou,ciou_dfl \
        --variant ciou_dfl:loss.box_loss=ciou,model.box_head=distribution

Re-analyse finished runs without training (e.g. an old sweep folder, or with another baseline)::

    boxloss-compare --report-only runs/compare --baseline giou

Resumable: run the same command again after an interruption. Finished runs are reused, an interrupted
run resumes from its ``checkpoint_last.pt``, a run changed in config is refused (use a new folder).

Several processes or GPUs: give each process a disjoint part, then write the report once all are done::

    CUDA_VISIBLE_DEVICES=0 boxloss-compare --config C --output-dir D --shard 0/2 &
    CUDA_VISIBLE_DEVICES=1 boxloss-compare --config C --output-dir D --shard 1/2 &
    wait; boxloss-compare --report-only D

On one CPU machine, ``--jobs N`` does the same in one command: N shards at once, each with cores/N
threads, then the report (faster than one process for this small model; see docs/benchmarks.md).

On a Ray cluster (``pip install 'boxloss[ray]'``; the output folder on storage every node shares), each run
is a Ray task, retried if its worker dies; the report is written once all are done::

    boxloss-compare --config C --output-dir /shared/D --executor ray --ray-address auto --cpus-per-run 4 --gpus-per-run 1

``--only loss=ciou,seed=1`` (repeat a key to pick several: ``loss=iou,loss=giou``) runs a chosen part.
``--report-only --allow-missing`` reports whatever has finished (e.g. at a deadline) and lists the
missing runs at the top of report.md. All processes must use the same --config, --losses, --seeds and data flags. Runs on a shared folder
(NFS) from several machines work too; each run folder is locked by the process training it.

Other detectors: ``--detector ultralytics:yolo11n.yaml`` trains Ultralytics YOLO per run instead of boxloss' own
detector (the extra boxloss[ultralytics]), ``--detector torchvision:fcos_resnet50_fpn`` a torchvision detector
from scratch on the engine's data, seeds and optimiser (boxloss/integrations/sweep_detectors.py, docs/integrations.md).

All logic lives in ``boxloss.engine.sweep`` (training, resume, locks) and ``boxloss.evaluation``
(COCO evaluation, report, plots).
"""

import argparse
import json
import logging
import sys

from boxloss.boxes import available_box_losses
from boxloss.data import DatasetError
from boxloss.engine import ConfigError, TrainingError, load_config, merge_config
from boxloss.engine.sweep import (VARIANTS, build_report, discover_runs, missing_runs, parse_variants, plan_runs, run_sweep,
                                  select_runs, sweep_config, write_plan)
from boxloss.engine.sweep_jobs import run_jobs
from boxloss.engine.sweep_progress import format_progress, progress_key
from boxloss.engine.sweep_ray import RayNotInstalled, import_ray, run_ray
from boxloss.evaluation import BACKENDS, STAT_NAMES
from boxloss.evaluation.comparison_tables import format_comparison_table
from boxloss.evaluation.report import format_table

DEFAULT_LOSSES = "smooth_l1,iou,giou,diou,ciou"
# What the --jobs children run: run_jobs starts ``sys.executable SCRIPT ARGS...``, and "-mMODULE" is
# Python's one-word spelling of "-m MODULE", so the children run this module from the installed package
# (with boxloss.cli's OMP_WAIT_POLICY), however the parent was started: boxloss-compare, python -m or
# scripts/compare_losses.py.
CHILD_SCRIPT = "-mboxloss.cli.compare"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="box losses: " + ", ".join(available_box_losses()))
    p.add_argument("--config", help="YAML config (configs/smoke.yaml, configs/quick.yaml, configs/default.yaml); "
                                    "with --report-only DIR, default: the runs' own config.yaml")
    p.add_argument("--losses", default=None, help=f"comma-separated box losses; the first is the default baseline "
                                                  f"(default {DEFAULT_LOSSES}; with --report-only DIR: the sweep's own)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per loss: 0..N-1 (default 3; with --report-only DIR: the sweep's own)")
    p.add_argument("--baseline", default=None, help="the loss every other is compared with (default: the first of --losses)")
    p.add_argument("--metric", default="AP", choices=STAT_NAMES, help="the metric of the verdict (default AP = AP@[.5:.95])")
    p.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate of the Holm-corrected verdicts (default 0.05)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="image-bootstrap resamples per seed and comparison (default 1000; 0 skips the image-level intervals)")
    p.add_argument("--output-dir", default="runs/compare", help="sweep folder (default runs/compare)")
    p.add_argument("--train-ann", help="COCO json of the training split (data.train_ann)")
    p.add_argument("--train-images", help="image folder of the training split (data.train_images)")
    p.add_argument("--val-ann", help="COCO json of the validation split (data.val_ann)")
    p.add_argument("--val-images", help="image folder of the validation split (data.val_images)")
    p.add_argument("--epochs", type=int, help="train.epochs")
    p.add_argument("--device", help="cpu | cuda | auto (train.device)")
    p.add_argument("--backend", choices=BACKENDS, default="hotcoco",
                   help="COCO evaluator of each finished run's result.json (default hotcoco; pycocotools, the reference, gives "
                        "the same numbers); the report's analyses always use hotcoco")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
                   help="a named config change compared like a box loss, e.g. ciou_dfl:model.box_head=distribution "
                        "(the config plus its changes; repeat a name to add more); list NAME in --losses")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. optim.lr=0.01 (may be repeated)")
    p.add_argument("--only", default=None, metavar="loss=L,seed=S", help="run only these runs, e.g. loss=ciou,seed=1")
    p.add_argument("--shard", default=None, metavar="I/N", help="run every N-th run starting at I (0-based)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train N runs at once, each with cores/N threads (a small CPU model trains faster so); "
                        "output of each in OUTPUT_DIR/job<i>.log")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the runs train: local (this machine, --jobs N at once; the default) or ray (one Ray task "
                        "per run on a Ray cluster, the output folder on shared storage; pip install 'boxloss[ray]'; "
                        "docs/protocol.md, \"Sweeps on a Ray cluster\")")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --executor ray: the cluster (auto: the one `ray start` joined on this machine; HOST:6379); "
                        "default $RAY_ADDRESS, else a new Ray instance on this machine for the command")
    p.add_argument("--cpus-per-run", type=int, default=None, metavar="N",
                   help="with --executor ray: CPUs each run reserves, and its train.threads unless --set gives them (default 1)")
    p.add_argument("--gpus-per-run", type=float, default=None, metavar="G",
                   help="with --executor ray: GPUs each run reserves (default 0; a fraction shares a GPU)")
    p.add_argument("--max-retries", type=int, default=None, metavar="N",
                   help="with --executor ray: restarts of a run whose worker process or node dies, from its last "
                        "checkpoint (default 2); an error raised by training is reported, not retried")
    p.add_argument("--detector", default="boxloss", metavar="boxloss|ultralytics:MODEL.yaml|torchvision:NAME",
                   help="the detector trained per run (default boxloss' own); ultralytics:yolo11n.yaml needs the "
                        "extra boxloss[ultralytics]; torchvision:NAME trains torchvision's detector from scratch, NAME "
                        "one of fcos_resnet50_fpn, retinanet_resnet50_fpn(_v2), fasterrcnn_resnet50_fpn(_v2), "
                        "fasterrcnn_mobilenet_v3_large_fpn (docs/integrations.md); local, one process only")
    p.add_argument("--no-report", action="store_true", help=argparse.SUPPRESS)  # set for the --jobs children
    p.add_argument("--report-only", nargs="?", const=True, default=False, metavar="DIR",
                   help="train nothing; write the report from finished runs (of DIR, default --output-dir)")
    p.add_argument("--allow-missing", action="store_true",
                   help="with --report-only: report the finished runs even if some are missing (the report says which)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and the sweep's own lines only")
    return p.parse_args(argv)


def parse_only(text: str | None) -> dict | None:
    """``"loss=ciou,seed=1"`` -> ``{"loss": ["ciou"], "seed": [1]}``."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in ("loss", "seed"):
            raise ValueError(f"--only {text!r}: expected loss=NAME and/or seed=K, comma-separated")
        out.setdefault(key, []).append(int(value) if key == "seed" else value.strip())
    return out


def parse_shard(text: str | None):
    if not text:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    return i, n


def build_config(args) -> dict:
    extra = {}
    flags = {("data", "train_ann"): args.train_ann, ("data", "train_images"): args.train_images,
             ("data", "val_ann"): args.val_ann, ("data", "val_images"): args.val_images,
             ("train", "epochs"): args.epochs, ("train", "device"): args.device}
    for (section, key), value in flags.items():
        if value is not None:
            extra.setdefault(section, {})[key] = value
    return load_config(args.config, list(args.set), extra=extra)


def plan_from_args(args) -> tuple[dict, list[tuple[str, int]]]:
    """(config, runs) of the command: from the flags, or for ``--report-only DIR`` from the folder
    where the flags do not say."""
    if isinstance(args.report_only, str):
        args.output_dir = args.report_only
    from_folder = bool(args.report_only) and (args.losses is None or args.seeds is None or args.config is None)
    found = discover_runs(args.output_dir) if from_folder else []
    losses = ([name.strip() for name in args.losses.split(",") if name.strip()] if args.losses is not None
              else list(dict.fromkeys(l for l, _ in found)) if found else DEFAULT_LOSSES.split(","))
    variants = parse_variants(args.variant)
    clash = sorted(set(variants) & set(available_box_losses()))
    if clash:
        raise ValueError(f"--variant {clash[0]}: the name of a box loss; give the variant another name")
    unknown = [name for name in losses if name not in available_box_losses() and name not in variants]
    if (unknown and not args.report_only) or not losses:
        raise ValueError(f"--losses: unknown box loss(es) or variant(s) {unknown}; accepted: "
                         f"{', '.join(available_box_losses())}{' and the variants ' + ', '.join(variants) if variants else ''}")
    if args.seeds is not None and args.seeds < 1:
        raise ValueError("--seeds must be >= 1")
    seeds = (args.seeds if args.seeds is not None else sorted({s for _, s in found}) if found else 3)
    runs = plan_runs(losses, seeds)
    if args.config is None:
        if not args.report_only:
            raise ValueError("--config is required (except with --report-only DIR, which reads the runs' own config)")
        cfg = sweep_config(args.output_dir, runs)
    else:
        cfg = build_config(args)
    for name, changes in variants.items():
        try:
            merge_config(cfg, changes)  # a bad key or value is an error now, not in a run an hour from now
        except ConfigError as err:
            raise ConfigError(f"--variant {name}: {err}") from None
    if variants:
        cfg[VARIANTS] = variants
    if args.baseline is not None and args.baseline not in losses:
        raise ValueError(f"--baseline {args.baseline}: not among the compared losses ({', '.join(losses)})")
    return cfg, runs


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    try:
        cfg, runs = plan_from_args(args)
        if args.quiet:
            cfg["train"]["progress"] = False
        mine = select_runs(runs, only=parse_only(args.only), shard=parse_shard(args.shard))
        train_fn = None
        if args.detector != "boxloss":  # boxloss/integrations/sweep_detectors.py; the default path is unchanged
            from boxloss.integrations.sweep_detectors import make_train_fn

            train_fn = make_train_fn(args.detector)
            if args.jobs > 1 or args.executor == "ray":
                raise ValueError(f"--detector {args.detector}: one local process only (not with --jobs or --executor ray)")
            cfg["model"]["detector"] = args.detector  # in the runs' fingerprint: runs of another detector are refused
            # (DEFAULTS has "boxloss", so the engine's runs from before this key existed keep their fingerprint)
            for name, changes in parse_variants(args.variant).items():  # other detectors read only these keys
                ignored = sorted(f"{sec}.{key}" for sec, keys in changes.items() for key in keys
                                 if not (sec == "loss" and key in ("box_loss", "args", "weights")))
                if ignored:
                    raise ValueError(f"--variant {name}: {', '.join(ignored)} do(es) not apply to --detector "
                                     f"{args.detector}, which reads only loss.box_loss, loss.args and loss.weights")
        if args.jobs < 1 or (args.jobs > 1 and args.shard):
            raise ValueError(f"--jobs {args.jobs}: expected N >= 1, and not together with --shard")
        ray_flags = {"--ray-address": args.ray_address, "--cpus-per-run": args.cpus_per_run,
                     "--gpus-per-run": args.gpus_per_run, "--max-retries": args.max_retries}
        if args.executor != "ray" and any(v is not None for v in ray_flags.values()):
            raise ValueError(f"{', '.join(k for k, v in ray_flags.items() if v is not None)}: only with --executor ray")
        if args.executor == "ray" and not args.report_only:
            if args.jobs > 1:
                raise ValueError(f"--jobs {args.jobs}: not with --executor ray (Ray trains as many runs at once as the "
                                 "cluster's resources allow; see --cpus-per-run)")
            import_ray()  # before anything is written: a one-line error naming the extra
        if not args.report_only and not args.no_report:  # the parent of --jobs children writes it once
            write_plan(args.output_dir, list(dict.fromkeys(l for l, _ in runs)), sorted({s for _, s in runs}),
                       cfg.get(VARIANTS))
        if (args.jobs > 1 or args.executor == "ray") and not args.report_only:
            shown = {}

            def progress(jobs=args.jobs):  # a new block when a run starts an epoch or finishes, not at every loss value
                key = progress_key(runs, args.output_dir, cfg["train"]["epochs"])
                if key != shown.get("key"):
                    shown["key"] = key
                    shown["text"] = format_progress(runs, args.output_dir, cfg["train"]["epochs"], jobs=jobs)
                return shown["text"]

        if args.executor == "ray" and not args.report_only:
            outcomes = run_ray(cfg, mine, args.output_dir, backend=args.backend, address=args.ray_address,
                               cpus_per_run=1 if args.cpus_per_run is None else args.cpus_per_run,
                               gpus_per_run=0.0 if args.gpus_per_run is None else args.gpus_per_run,
                               max_retries=2 if args.max_retries is None else args.max_retries, progress=progress)
            failed = [f"{l} seed {s}: {o['error']}" for (l, s), o in outcomes.items() if o["status"] == "failed"]
            locked = [f"{l} seed {s}" for (l, s), o in outcomes.items() if o["status"] == "locked"]
            if locked:
                print(f"[sweep] busy in another process, skipped: {', '.join(locked)}")
            if failed:
                raise TrainingError(f"{len(failed)} of {len(outcomes)} runs failed (the others finished; the same "
                                    "command retrains only what is missing): " + "; ".join(failed))
        elif args.jobs > 1 and not args.report_only:
            codes = run_jobs(sys.argv[1:] if argv is None else list(argv), args.jobs, args.output_dir, CHILD_SCRIPT,
                             progress=progress)
            if any(codes):
                raise TrainingError(f"{sum(c != 0 for c in codes)} of {args.jobs} sweep processes failed (see above)")
        elif not args.report_only:
            status = run_sweep(cfg, mine, args.output_dir, backend=args.backend, train_fn=train_fn)
            locked = [f"{l} seed {s}" for (l, s), v in status.items() if v == "locked"]
            if locked:
                print(f"[sweep] busy in another process, skipped: {', '.join(locked)}")
        missing = missing_runs(runs, args.output_dir)
        if missing and not (args.report_only and args.allow_missing):
            print(f"[sweep] {len(runs) - len(missing)}/{len(runs)} runs finished; still missing: "
                  + ", ".join(f"{l} seed {s}" for l, s in missing)
                  + ". When every part is done: the same command with --report-only.")
            return 0 if not args.report_only else 1
        if args.no_report:
            return 0
        out = build_report(cfg, runs, args.output_dir, allow_missing=args.allow_missing, baseline=args.baseline,
                           metric=args.metric, alpha=args.alpha, n_bootstrap=args.bootstrap)
    except (ConfigError, DatasetError, ValueError, FileNotFoundError, RayNotInstalled) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (TrainingError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    print()
    for paragraph in out["answer"]:
        print(paragraph)
        print()
    report = json.loads(out["json"].read_text(encoding="utf-8"))
    if report.get("comparison"):
        print(format_comparison_table(report["comparison"]).replace("<br>", "; "))
        print()
    print(format_table(out["summary"]))
    print()
    print(f"report: {out['md']} (+ report.json, report.csv, PNG plots in {args.output_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
