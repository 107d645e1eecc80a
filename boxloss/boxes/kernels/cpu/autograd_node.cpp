// The one-pass sum / mean of a box loss as a C++ autograd node: what functions.BoxLossOnePass does, with
// the node in C++ instead of Python (the autograd engine runs a Python node in ~20 us; this one in a few).
//
// Built on first use by cpu_node.py with torch.utils.cpp_extension (torch's headers and ABI); it calls the
// kernel library's bl_box_loss (abi.h) through the function pointer it is given with each call, so the
// library stays a plain C ABI built without torch. Semantics, as BoxLossOnePass:
// - forward: one kernel pass writes the sum / mean of the per-box losses and the gradient(s) needed, scaled
//   by d(reduced loss)/d(loss of one box) (1 / n for a mean, 1 for a sum); the inputs are saved with
//   save_for_backward (so a second backward without retain_graph raises, and an input changed in place
//   before a retained second backward is detected);
// - backward: hands the saved gradient over, scaled in place by the incoming gradient unless that is 1;
//   a second backward (retain_graph=True) recomputes it with the same arithmetic through the backward
//   kernel; with create_graph=True it raises (the kernels' gradient is not differentiable).
#include <torch/extension.h>

#include <cstdint>
#include <string>

#include "abi.h"

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;
using BoxLossFn = decltype(&bl_box_loss);

// One bl_box_loss call on n >= 0 box pairs, with the call's configuration as the node saves it -- cfg: the
// function pointer, kind, fmt, variant, flags; par: eps, p0, p1, p2, and the gradient scale (one value,
// given in the boxes' dtype) -- writing whichever of out (reduced by `reduce`), gp, gt is defined.
void run(const std::vector<int64_t>& cfg, const std::vector<double>& par, const torch::Tensor& p,
         const torch::Tensor& t, const torch::Tensor& ex, const torch::Tensor& out, int reduce,
         const torch::Tensor& gp, const torch::Tensor& gt, const char* what) {
  const int64_t n = p.size(0);
  if (n == 0) return;
  const int dtype = p.scalar_type() == torch::kFloat ? 0 : 1;
  const float scale_f = float(par[4]);
  const double scale_d = par[4];
  auto ptr = [](const torch::Tensor& x) -> void* { return x.defined() ? x.data_ptr() : nullptr; };
  auto box_loss = reinterpret_cast<BoxLossFn>(cfg[0]);
  const int rc = box_loss(dtype, int(cfg[1]), int(cfg[2]), int(cfg[3]), int(cfg[4]), par[0], par[1], par[2], par[3],
                          n, p.data_ptr(), t.data_ptr(), ptr(ex), ex.defined() && ex.numel() > 1 ? 1 : 0,
                          dtype == 0 ? static_cast<const void*>(&scale_f) : &scale_d, 0, ptr(out), reduce, ptr(gp),
                          ptr(gt), at::get_num_threads());
  TORCH_CHECK(rc == BL_OK, "boxloss CPU kernel ", what, " failed (code ", rc, ", see abi.h)");
}

struct BoxLossOnePassNode : public torch::autograd::Function<BoxLossOnePassNode> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor p, torch::Tensor t, c10::optional<torch::Tensor> extra,
                               int64_t fn, int64_t kind, int64_t fmt, int64_t variant, int64_t flags, double eps,
                               double p0, double p1, double p2, int64_t reduce) {
    // what the dispatch guarantees, checked because a mistake here would corrupt memory, not raise
    TORCH_CHECK(p.device().is_cpu() && p.dim() == 2 && p.size(1) == 4 && p.is_contiguous() && t.sizes() == p.sizes() &&
                    t.is_contiguous() && t.device().is_cpu() && t.scalar_type() == p.scalar_type() &&
                    (p.scalar_type() == torch::kFloat || p.scalar_type() == torch::kDouble),
                "boxloss: the C++ autograd node takes [N, 4] contiguous float32/float64 CPU boxes of one dtype");
    TORCH_CHECK(!extra.has_value() || (extra->is_contiguous() && extra->scalar_type() == p.scalar_type() &&
                                       (extra->numel() == 1 || extra->numel() == p.size(0))),
                "boxloss: the extra input must hold one value or one per box, in the boxes' dtype");
    const int64_t n = p.size(0);
    const bool need_p = ctx->needs_input_grad(0), need_t = ctx->needs_input_grad(1);
    auto out = n ? torch::empty({}, p.options()) : torch::zeros({}, p.options());
    auto gp = need_p ? torch::empty_like(p) : torch::Tensor();
    auto gt = need_t ? torch::empty_like(t) : torch::Tensor();
    const torch::Tensor ex = extra.has_value() ? *extra : torch::Tensor();
    const std::vector<int64_t> cfg{fn, kind, fmt, variant, flags};
    const std::vector<double> par{eps, p0, p1, p2, reduce == BL_REDUCE_MEAN ? 1.0 / double(n > 0 ? n : 1) : 1.0};
    run(cfg, par, p, t, ex, out, int(reduce), gp, gt, "forward+backward");
    ctx->save_for_backward({p, t, ex});
    ctx->saved_data["gp"] = gp;
    ctx->saved_data["gt"] = gt;
    ctx->saved_data["cfg"] = cfg;
    ctx->saved_data["par"] = par;
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    TORCH_CHECK(!torch::GradMode::is_enabled(), "boxloss: the fused kernels' gradient is not differentiable (double "
                "backward); use impl=\"reference\" for higher-order gradients");
    torch::Tensor gp = ctx->saved_data["gp"].toTensor(), gt = ctx->saved_data["gt"].toTensor();
    if (ctx->saved_data.count("handed")) {  // a second backward (retain_graph=True): recompute
      const auto saved = ctx->get_saved_variables();
      const torch::Tensor &p = saved[0], &t = saved[1];
      gp = ctx->needs_input_grad(0) ? torch::empty_like(p) : torch::Tensor();
      gt = ctx->needs_input_grad(1) ? torch::empty_like(t) : torch::Tensor();
      run(ctx->saved_data["cfg"].toIntVector(), ctx->saved_data["par"].toDoubleVector(), p, t, saved[2],
          torch::Tensor(), BL_REDUCE_NONE, gp, gt, "backward");
    } else {  // hand the buffers over: autograd may keep them as the inputs' .grad
      ctx->saved_data["handed"] = true;
      ctx->saved_data["gp"] = torch::Tensor();
      ctx->saved_data["gt"] = torch::Tensor();
    }
    const torch::Tensor& g = grads[0];
    if (g.item<double>() != 1.0) {
      if (gp.defined()) gp.mul_(g);
      if (gt.defined()) gt.mul_(g);
    }
    tensor_list result(13);
    result[0] = gp;
    result[1] = gt;
    return result;
  }
};

torch::Tensor box_loss_one_pass(torch::Tensor p, torch::Tensor t, c10::optional<torch::Tensor> extra, int64_t fn,
                                int64_t kind, int64_t fmt, int64_t variant, int64_t flags, double eps, double p0,
                                double p1, double p2, int64_t reduce) {
  return BoxLossOnePassNode::apply(p, t, extra, fn, kind, fmt, variant, flags, eps, p0, p1, p2, reduce);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("abi_version", []() { return BL_ABI_VERSION; });
  m.def("box_loss_one_pass", &box_loss_one_pass,
        "sum / mean of a box loss and its gradient in one kernel pass, as a C++ autograd node");
}
