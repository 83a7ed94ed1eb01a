// Portable SIMD helpers on GCC/Clang vector extensions, included INSIDE an ISA namespace (after
// `#define PYCONV_ISA`): the vector width follows the ISA the file is compiled for (16 bytes
// baseline SSE2, 32 AVX2, 64 AVX-512), so one source gives every variant.
#pragma once

constexpr Isa kIsa = Isa::PYCONV_ISA;
constexpr int kVecBytes = isa_vec_bytes(kIsa);

// V<T>::vec: L lanes of T; ivec: integer lanes of the same size (what comparisons return);
// lvec: L int64 lanes.
template <class T>
struct V;
template <>
struct V<float> {
  static constexpr int L = kVecBytes / 4;
  typedef float vec __attribute__((vector_size(kVecBytes)));
  typedef int32_t ivec __attribute__((vector_size(kVecBytes)));
  typedef int64_t lvec __attribute__((vector_size(kVecBytes * 2)));
};
template <>
struct V<double> {
  static constexpr int L = kVecBytes / 8;
  typedef double vec __attribute__((vector_size(kVecBytes)));
  typedef int64_t ivec __attribute__((vector_size(kVecBytes)));
  typedef int64_t lvec __attribute__((vector_size(kVecBytes)));
};

template <class T>
inline typename V<T>::vec loadu(const T* p) {
  typename V<T>::vec v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
template <class T>
inline void storeu(T* p, typename V<T>::vec v) {
  __builtin_memcpy(p, &v, sizeof(v));
}
template <class T>
inline typename V<T>::vec splat(T x) {
  return typename V<T>::vec{} + x;  // callers: only where 0 + x == x is fine (never -0 needed)
}

// Lane t = p[t*S] for S = 1 or 2 (S = 2 reads exactly p[0 .. 2*L-2], two overlapping loads);
// S = 0 means a runtime stride `st` (element by element).
template <class T, int S>
inline typename V<T>::vec load_strided(const T* p, int64_t st = S) {
  using vec = typename V<T>::vec;
  using ivec = typename V<T>::ivec;
  constexpr int L = V<T>::L;
  if constexpr (S == 1) {
    (void)st;
    return loadu(p);
  } else if constexpr (S == 2) {
    (void)st;
    const vec a = loadu(p), b = loadu(p + L - 1);  // b[k] = p[L-1+k]
    ivec m;
    for (int t = 0; t < L; ++t) m[t] = t < L / 2 ? 2 * t : 2 * t + 1;  // index into a ++ b
    return __builtin_shuffle(a, b, m);
  } else {
    vec v;
    for (int t = 0; t < L; ++t) v[t] = p[t * st];
    return v;
  }
}
