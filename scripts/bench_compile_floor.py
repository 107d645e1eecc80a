"""What torch.compile adds to a fused loss call, kernel excluded: the floor under "fused+compile / fused".

    python scripts/bench_compile_floor.py --threads 2 --sizes 1e3,1e5,1e6 --losses iou,giou,ciou

Times, forward + backward of a [N, 4] leaf input, in one run (``loss_benchmark.time_calls``: the median of
interleaved rounds):
- "no-op, eager": an autograd.Function that does what the eager one-pass path does (``BoxLossOnePass``:
  allocate the loss and the gradient, hand the gradient over in the backward) but runs no kernel;
- "no-op, compiled": ``torch.compile(fullgraph=True, dynamic=False)`` of a custom op that does what
  ``boxloss::box_loss_reduced`` does (the same allocations, its backward the same product
  ``saved gradient * incoming gradient``) but runs no kernel;
- each loss's eager fused mean, and its compiled fused mean.

"added by compile" = no-op compiled - no-op eager: dynamo's guards, AOTAutograd's wrappers, the custom op's
dispatch and the backward's product (a pass over the gradient). The target "fused+compile <= 1.3 x fused"
needs that to be at most 0.3 x the eager fused time; the last column says whether it is.
"""

import argparse
import sys

import boxloss.cli  # noqa: F401 -- OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP, as every boxloss command
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from boxloss.experiments.loss_benchmark import loss_fn, make_boxes, time_calls  # noqa: E402


@torch.library.custom_op("boxloss_bench::noop_reduced", mutates_args=(), device_types=("cpu",))
def noop_reduced(p: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    return torch.zeros((), dtype=p.dtype), torch.empty_like(p)


@noop_reduced.register_fake
def _(p, t):
    return p.new_empty(()), torch.empty_like(p)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])


def _backward(ctx, grad, _grad_gp):
    gp, = ctx.saved_tensors
    return gp * grad, None


noop_reduced.register_autograd(_backward, setup_context=_setup)


class NoopOnePass(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p, t):
        ctx.grad = torch.empty_like(p)
        return torch.zeros((), dtype=p.dtype)

    @staticmethod
    def backward(ctx, grad):
        g, ctx.grad = ctx.grad, None
        if float(grad) != 1.0:
            g.mul_(grad)
        return g, None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1e3,1e5,1e6")
    ap.add_argument("--losses", default="iou,giou,ciou")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    losses = [s for s in args.losses.split(",") if s]
    print("| N | no-op eager µs | no-op compiled µs | added by compile µs | loss | fused µs | fused+compile µs "
          "| ratio | 0.3 x fused µs | floor within 1.3x? |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in [int(float(s)) for s in args.sizes.split(",")]:
        p, t = make_boxes(n)
        torch._dynamo.reset()
        fns = {"noop": NoopOnePass.apply,
               "noop+compile": torch.compile(lambda a, b: noop_reduced(a, b)[0], fullgraph=True, dynamic=False)}
        for name in losses:
            fns[name] = loss_fn(name, "fused")
            fns[name + "+compile"] = loss_fn(name, "fused+compile")
        s = time_calls(fns, p, t, rounds=args.rounds)
        added = s["noop+compile"] - s["noop"]
        for name in losses:
            e, c = s[name], s[name + "+compile"]
            print(f"| {n:.0e} | {s['noop'] * 1e6:.0f} | {s['noop+compile'] * 1e6:.0f} | {added * 1e6:.0f} | {name} "
                  f"| {e * 1e6:.0f} | {c * 1e6:.0f} | {c / e:.2f} | {0.3 * e * 1e6:.0f} | "
                  f"{'yes' if added <= 0.3 * e else 'no'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
