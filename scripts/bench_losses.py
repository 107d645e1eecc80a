"""Benchmark the box losses: forward+backward time and peak memory, torchvision.ops vs boxloss's
reference path vs boxloss's fused kernels, measured in the same run; prints a markdown table.

    python scripts/bench_losses.py --device cpu --threads 2 --losses iou,giou,diou,ciou \
        --sizes 1e3,1e4,1e5,1e6 --dtypes float32,bfloat16
    python scripts/bench_losses.py --device cpu --threads 2 --losses eiou,siou,mpdiou,wiou_v3 --sizes 1e4,1e6
    python scripts/bench_losses.py --device cpu --threads 2 --losses ciou,giou,eiou,smooth_l1 \
        --sizes 1e3,1e4,1e5,1e6 --dtypes float32 --compile --no-memory
    python scripts/bench_losses.py --device cpu --threads 2 --losses ciou,giou --weighted

--losses takes the core losses (iou, giou, diou, ciou, smooth_l1; the default) and the newer ones (eiou,
focal_eiou, siou, alpha_iou, wiou_v1, wiou_v3, mpdiou, inner_iou, shape_iou; no torchvision column).

--weighted times, instead, the weighted / avg_factor call detectors make, fused in one pass against the
two-pass composition it replaced (`boxloss.experiments.weighted_benchmark`).

--compile also times torch.compile(fullgraph=True, dynamic=False) of each implementation and prints the
ratios the kernels are judged by, then the time per call at N=1e3 (no peak memory with --compile).
Exit status: 0; 1 if a compile failed (its columns are "-", the reason is printed); 2 for bad input, a
failed --measure-build, or fused CPU kernels that cannot run (no C++ compiler): one ``error: ...`` line.

Methods (timing, memory, compile) are described in `boxloss.experiments.loss_benchmark`; results go to
docs/benchmarks.md.
"""

import argparse
import json
import sys

import boxloss.cli  # noqa: F401 -- sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP, as every boxloss command
import torch  # noqa: E402

from boxloss.experiments.loss_benchmark import (
    HEADER, HEADER_COMPILE, LOSSES, check_losses, environment, format_overhead, fused_unavailable, gpu_bandwidth,
    measure_cpu_build, run_benchmark,
)
from boxloss.experiments.weighted_benchmark import HEADER as WEIGHTED_HEADER  # noqa: E402
from boxloss.experiments.weighted_benchmark import run_weighted_benchmark  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--losses", default=",".join(LOSSES))
    ap.add_argument("--sizes", default=None, help="comma-separated N (default 1e3,1e4,1e5,1e6; +1e7 on cuda)")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default 9; 5 at N>=1e6)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    ap.add_argument("--compile", action="store_true",
                    help="also time torch.compile(fullgraph=True, dynamic=False) of each implementation")
    ap.add_argument("--measure-build", action="store_true",
                    help="time a fresh build of the CPU kernels first (in a temporary folder, removed afterwards)")
    ap.add_argument("--weighted", action="store_true",
                    help="instead: time the weighted / avg_factor call (fused one pass vs the two-pass composition; "
                         "CPU, float32, box losses only)")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = args.sizes or ("1e3,1e4,1e5,1e6,1e7" if args.device.startswith("cuda") else "1e3,1e4,1e5,1e6")
    sizes = [int(float(s)) for s in sizes.split(",")]
    try:
        losses = check_losses([s for s in args.losses.split(",") if s])
    except ValueError as e:
        ap.error(str(e))
    dtypes = [s for s in args.dtypes.split(",") if s]

    print(f"command: {' '.join(['python', 'scripts/bench_losses.py'] + (argv if argv is not None else sys.argv[1:]))}")
    print(environment(args.device))
    if args.measure_build:  # in a fresh temporary folder; the user's TORCH_EXTENSIONS_DIR is left alone
        try:
            build = measure_cpu_build()
        except RuntimeError as e:  # no C++ compiler, or the build failed
            print("error: --measure-build: " + str(e).strip().replace("\n", "\n    "), file=sys.stderr)
            return 2
        if build is None:
            print("note: --measure-build skipped: the CPU kernel backend has no build() to time")
        else:
            print(f"fresh build of the CPU kernels: {build['fresh_build_s']:.2f} s")
            print(f"load of the cached CPU kernels: {build['cached_load_s'] * 1e3:.1f} ms")
    why = fused_unavailable(args.device)
    if why is not None:  # the "fused" columns would fail on their first call
        print(f"error: the fused CPU kernels cannot run (the \"fused\" columns need them): {why}", file=sys.stderr)
        return 2
    if args.compile and not args.no_memory:
        print("note: --compile measures time only (no peak memory)")
    print()
    if args.weighted:
        if args.device != "cpu" or "smooth_l1" in losses:
            ap.error("--weighted times the box losses' CPU path: use --device cpu and leave out smooth_l1")
        print(WEIGHTED_HEADER, flush=True)
        rows = run_weighted_benchmark(losses, sizes, rounds=args.rounds, log=lambda line: print(line, flush=True))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
        return 0
    print(HEADER_COMPILE if args.compile else HEADER, flush=True)
    rows = run_benchmark(
        losses, sizes, dtypes, device=args.device, rounds=args.rounds, memory=not args.no_memory,
        log=lambda line: print(line, flush=True), compile=args.compile,
    )
    failed = 0
    if args.compile:
        overhead = format_overhead(rows)
        if overhead:
            print()
            print("time per call at N=1e3 (nearly all per-call overhead):")
            print(overhead)
        for row in rows:
            for impl, why in row.get("errors", {}).items():
                failed += 1
                print(f"compile failed: {row['loss']} N={row['n']:.0e} {row['dtype']} {impl}: {why}", file=sys.stderr)
    if args.device.startswith("cuda"):
        for row in rows:
            if row["n"] == max(sizes) and row["dtype"] == "float32" and "fused" in row["seconds"]:
                bw = gpu_bandwidth(row["loss"], row["n"], row["seconds"]["fused"])
                frac = f"{bw['fraction']:.0%} of peak {bw['peak_gbs']:.0f} GB/s" if bw["fraction"] else "peak unknown"
                print(f"{row['loss']} N={row['n']:.0e}: fused fwd+bwd moves >= {bw['achieved_gbs']:.0f} GB/s ({frac})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
