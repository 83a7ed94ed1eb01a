// Winograd F(4x4, 3x3) convolution (winograd.cpp): 3x3, stride 1, dilation 1; the forward in
// every padding mode, the input gradient with zero padding, the weight gradient in every mode.
// Dilated 3x3 layers and strided kernels spanning 3 strides each way (groups 1) run the same over
// the phases of their input.
#pragma once
#include "kernels.h"
#include "pyconv/conv2d.h"

namespace pyconv {

bool winograd_applies(const Conv2dParams& p, ConvDir dir);
// The "auto" rule: applicable, inside the stated error bound and measured faster.
bool winograd_preferred(const Conv2dParams& p, ConvDir dir);

// Both return false, having done nothing, when the transformed filters and one unit of tiles do
// not fit in the workspace limit (the caller then runs im2col).
template <class T>
bool conv2d_fwd_winograd(const ConvArgs<T>& a, int nt);
template <class T>
bool conv2d_bwd_data_winograd(const Conv2dParams& p, const T* dy, const T* w, T* dx, int nt);
// The weight gradient in every padding mode (a.x and the padding maps of a are used).
template <class T>
bool conv2d_bwd_weight_winograd(const ConvArgs<T>& a, const T* dy, T* dw, int nt);

}  // namespace pyconv
