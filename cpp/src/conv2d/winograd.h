// Winograd F(4x4, 3x3) convolution (winograd_plan.cpp, winograd_units.cpp, winograd_phases.cpp):
// 3x3, stride 1, dilation 1; the forward in every padding mode, the input gradient with zero
// padding, the weight gradient in every mode. Dilated 3x3 layers and strided kernels spanning 3
// strides each way (groups 1) run the same over the phases of their input.
#pragma once
#include <cstddef>

#include "kernels.h"
#include "pyconv/conv2d.h"

namespace pyconv {

// Implementation-list guards (conv2d/impl.h): the stride-1 3x3 layers, and the phase layers.
const char* winograd_guard(const Conv2dParams& p, ConvDir dir);
const char* winograd_phases_guard(const Conv2dParams& p, ConvDir dir);
bool winograd_applies(const Conv2dParams& p, ConvDir dir);  // either guard passes
// Whether the runs below fit the workspace limit (nullptr) or why not.
const char* winograd_fit(const Conv2dParams& p, ConvDir dir, size_t elem, int nt);

namespace wino {
// A strided or dilated layer p as the stride-1 3x3 layer q over its phases; false for others.
bool phase_split(const Conv2dParams& p, Conv2dParams& q);
}  // namespace wino

// All three return false, having written nothing, when the transformed filters and one unit of
// tiles (and, for phase layers, the phase planes) do not fit in the workspace limit.
template <class T>
bool conv2d_fwd_winograd(const ConvArgs<T>& a, int nt);
template <class T>
bool conv2d_bwd_data_winograd(const Conv2dParams& p, const T* dy, const T* w, T* dx, int nt);
// The weight gradient in every padding mode (a.x and the padding maps of a are used).
template <class T>
bool conv2d_bwd_weight_winograd(const ConvArgs<T>& a, const T* dy, T* dw, int nt);

}  // namespace pyconv
