// Internal to the conv2d operator: the padding maps every kernel reads, and small shape helpers.
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>

#include "kernels.h"
#include "pyconv/conv2d.h"
#include "sizes.h"

namespace pyconv {

inline int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// int64 entries, inline up to kInline: the maps of lecture-sized calls cost no heap allocation.
class SmallVec {
 public:
  explicit SmallVec(int64_t n) : heap_(n > kInline ? new int64_t[static_cast<size_t>(n)] : nullptr) {}
  SmallVec(const SmallVec&) = delete;
  SmallVec& operator=(const SmallVec&) = delete;
  int64_t* data() { return heap_ ? heap_.get() : inline_; }
  const int64_t* data() const { return heap_ ? heap_.get() : inline_; }
  int64_t& operator[](int64_t i) { return data()[i]; }
  int64_t operator[](int64_t i) const { return data()[i]; }

 private:
  static constexpr int64_t kInline = 64;
  int64_t inline_[kInline];
  std::unique_ptr<int64_t[]> heap_;
};

// Padded coordinate -> input coordinate (or -1 for a zero) for one dimension, into m.
inline void pad_map(int64_t size, int64_t before, int64_t after, PadMode mode, SmallVec& m) {
  for (int64_t q = 0; q < size + before + after; ++q) {
    int64_t i = q - before;
    if (i < 0 || i >= size) {
      switch (mode) {
        case PadMode::zeros: i = -1; break;
        case PadMode::reflect: i = i < 0 ? -i : 2 * (size - 1) - i; break;
        case PadMode::replicate: i = i < 0 ? 0 : size - 1; break;
        case PadMode::circular: i = ((i % size) + size) % size; break;
      }
    }
    m[q] = i;
  }
}

// The maps and interior column ranges every kernel uses (see ConvArgs).
struct ConvMaps {
  SmallVec row, col, lo, hi;
  explicit ConvMaps(const Conv2dParams& p)
      : row(p.h + p.pad_t + p.pad_b), col(p.w + p.pad_l + p.pad_r), lo(p.s), hi(p.s) {
    pad_map(p.h, p.pad_t, p.pad_b, p.mode, row);
    pad_map(p.w, p.pad_l, p.pad_r, p.mode, col);
    for (int64_t s = 0; s < p.s; ++s) {
      const int64_t off = s * p.dil_w - p.pad_l;  // input column = ow*stride_w + off
      const int64_t l = std::clamp<int64_t>(ceil_div(-off, p.stride_w), 0, p.ow);
      const int64_t h = std::clamp<int64_t>(floor_div(p.w - 1 - off, p.stride_w) + 1, l, p.ow);
      lo[s] = l;
      hi[s] = h;
    }
  }
  template <class T>
  ConvArgs<T> args(const Conv2dParams& p) const {
    ConvArgs<T> a{};
    a.p = &p;
    a.row_map = row.data();
    a.col_map = col.data();
    a.col_lo = lo.data();
    a.col_hi = hi.data();
    return a;
  }
};

// Multiply-adds of one direction (all three do the same number), saturating: only a thread
// count is derived from it.
inline int64_t macs(const Conv2dParams& p) {
  const double m = static_cast<double>(p.n * p.k * p.oh * p.ow) * static_cast<double>((p.c / p.groups) * p.r * p.s);
  return m > 1e18 ? int64_t{1000000000000000000} : static_cast<int64_t>(m);
}

inline bool is_pointwise(const Conv2dParams& p) {
  return p.r == 1 && p.s == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_t == 0 &&
         p.pad_b == 0 && p.pad_l == 0 && p.pad_r == 0;
}

// Vector lanes of T on `isa`.
template <class T>
constexpr int64_t lanes(Isa isa) { return isa_vec_bytes(isa) / static_cast<int64_t>(sizeof(T)); }

}  // namespace pyconv
