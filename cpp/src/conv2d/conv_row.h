// Row helpers shared by the direct and im2col kernels (included inside an ISA namespace).
// For tap s, output columns [lo, hi) read input column ow*sw + off directly; the others go
// through col_map, which is -1 for a zero-padded column.

template <class T>
inline void row_axpy(T* __restrict yr, const T* __restrict xr, T wv, int64_t ow_n, int64_t sw,
                     int64_t tap, int64_t off, int64_t lo, int64_t hi, const int64_t* col_map) {
  for (int64_t ow = 0; ow < lo; ++ow) {
    const int64_t iw = col_map[ow * sw + tap];
    if (iw >= 0) yr[ow] += wv * xr[iw];
  }
  if (sw == 1) {
    const T* __restrict xs = xr + off;
#pragma omp simd
    for (int64_t ow = lo; ow < hi; ++ow) yr[ow] += wv * xs[ow];
  } else {
#pragma omp simd
    for (int64_t ow = lo; ow < hi; ++ow) yr[ow] += wv * xr[ow * sw + off];
  }
  for (int64_t ow = hi; ow < ow_n; ++ow) {
    const int64_t iw = col_map[ow * sw + tap];
    if (iw >= 0) yr[ow] += wv * xr[iw];
  }
}

// The transpose of row_axpy: xr[column of ow] += wv * yr[ow].
template <class T>
inline void row_scatter(T* __restrict xr, const T* __restrict yr, T wv, int64_t ow_n, int64_t sw,
                        int64_t tap, int64_t off, int64_t lo, int64_t hi, const int64_t* col_map) {
  for (int64_t ow = 0; ow < lo; ++ow) {
    const int64_t iw = col_map[ow * sw + tap];
    if (iw >= 0) xr[iw] += wv * yr[ow];
  }
  if (sw == 1) {
    T* __restrict xs = xr + off;
#pragma omp simd
    for (int64_t ow = lo; ow < hi; ++ow) xs[ow] += wv * yr[ow];
  } else {
    // Distinct ow hit distinct columns, so the lanes never collide.
#pragma omp simd
    for (int64_t ow = lo; ow < hi; ++ow) xr[ow * sw + off] += wv * yr[ow];
  }
  for (int64_t ow = hi; ow < ow_n; ++ow) {
    const int64_t iw = col_map[ow * sw + tap];
    if (iw >= 0) xr[iw] += wv * yr[ow];
  }
}

// sum_ow yr[ow] * xr[column of ow]
template <class T>
inline T row_dot(const T* __restrict yr, const T* __restrict xr, int64_t ow_n, int64_t sw,
                 int64_t tap, int64_t off, int64_t lo, int64_t hi, const int64_t* col_map) {
  T sum = 0;
  for (int64_t ow = 0; ow < lo; ++ow) {
    const int64_t iw = col_map[ow * sw + tap];
    if (iw >= 0) sum += yr[ow] * xr[iw];
  }
  T mid = 0;
  if (sw == 1) {
    const T* __restrict xs = xr + off;
#pragma omp simd reduction(+ : mid)
    for (int64_t ow = lo; ow < hi; ++ow) mid += yr[ow] * xs[ow];
  } else {
#pragma omp simd reduction(+ : mid)
    for (int64_t ow = lo; ow < hi; ++ow) mid += yr[ow] * xr[ow * sw + off];
  }
  sum += mid;
  for (int64_t ow = hi; ow < ow_n; ++ow) {
    const int64_t iw = col_map[ow * sw + tap];
    if (iw >= 0) sum += yr[ow] * xr[iw];
  }
  return sum;
}
