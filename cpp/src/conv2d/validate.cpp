// conv2d parameter validation, the output-size rule and "same" padding (the one C++ copy of each).
#include <string>

#include "pyconv/conv2d.h"
#include "sizes.h"

namespace pyconv {

#define REQUIRE(ok, msg) PYCONV_REQUIRE("conv2d", ok, msg)

bool conv2d_same_pads(int64_t dil, int64_t k, int64_t& before, int64_t& after) {
  int64_t total;
  if (dil < 1 || k < 1 || __builtin_mul_overflow(dil, k - 1, &total)) return false;
  before = total / 2;
  after = total - total / 2;
  return true;
}

void conv2d_validate(Conv2dParams& p) {
  REQUIRE(p.n >= 0, "batch size must be >= 0, got " + s(p.n));
  REQUIRE(p.c >= 1 && p.h >= 1 && p.w >= 1,
          "input channels, height and width must be >= 1, got C=" + s(p.c) + " H=" + s(p.h) + " W=" + s(p.w));
  REQUIRE(p.k >= 1 && p.r >= 1 && p.s >= 1,
          "weight sizes must be >= 1, got K=" + s(p.k) + " R=" + s(p.r) + " S=" + s(p.s));
  REQUIRE(p.groups >= 1, "groups must be >= 1, got " + s(p.groups));
  REQUIRE(p.c % p.groups == 0 && p.k % p.groups == 0,
          "groups=" + s(p.groups) + " must divide input channels " + s(p.c) + " and output channels " + s(p.k));
  REQUIRE(p.stride_h >= 1 && p.stride_w >= 1,
          "stride must be >= 1, got (" + s(p.stride_h) + ", " + s(p.stride_w) + ")");
  REQUIRE(p.dil_h >= 1 && p.dil_w >= 1, "dilation must be >= 1, got (" + s(p.dil_h) + ", " + s(p.dil_w) + ")");
  REQUIRE(p.pad_t >= 0 && p.pad_b >= 0 && p.pad_l >= 0 && p.pad_r >= 0, "padding must be >= 0");
  if (p.mode == PadMode::reflect)
    REQUIRE(p.pad_t < p.h && p.pad_b < p.h && p.pad_l < p.w && p.pad_r < p.w,
            "reflect padding must be smaller than the input size");
  if (p.mode == PadMode::circular)
    REQUIRE(p.pad_t <= p.h && p.pad_b <= p.h && p.pad_l <= p.w && p.pad_r <= p.w,
            "circular padding must not exceed the input size");
  checked_numel({p.n, p.c, p.h, p.w}, "input");
  checked_numel({p.k, p.c / p.groups, p.r, p.s}, "weight");
  const int64_t eh = checked_add(checked_mul(p.dil_h, p.r - 1, "dilation"), 1, "dilation");
  const int64_t ew = checked_add(checked_mul(p.dil_w, p.s - 1, "dilation"), 1, "dilation");
  const int64_t ph = checked_add(p.h, checked_add(p.pad_t, p.pad_b, "padding"), "padding");
  const int64_t pw = checked_add(p.w, checked_add(p.pad_l, p.pad_r, "padding"), "padding");
  REQUIRE(eh <= ph && ew <= pw, "kernel (" + s(eh) + ", " + s(ew) + ") is larger than the padded input (" +
                                    s(ph) + ", " + s(pw) + ")");
  p.oh = (ph - eh) / p.stride_h + 1;  // the output-size rule (conv2d.h)
  p.ow = (pw - ew) / p.stride_w + 1;
  checked_numel({p.n, p.k, p.oh, p.ow}, "output");
}

}  // namespace pyconv
