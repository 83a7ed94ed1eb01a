// Direct convolution for one input channel per group (depthwise, channel multiplier kg >= 1),
// included inside an ISA namespace after simd.h. Every padding mode is applied once per plane:
// the input (fwd, bwd_weight) is copied into a padded plane through the row/column maps, so the
// inner loops are plain vector loads with every tap accumulated in a register:
//   fwd        y[oh][ow]  = b + sum_rs w[r][s] * xp[oh*sh + r*dh][ow*sw + s*dw]
//   bwd_data   dxp[ph][pw] = sum_k sum_rs w[r][s] * U[ph + (R-1-r)*dh][pw + (S-1-s)*dw], with U
//              dy zero-stuffed by the stride and shifted by the kernel extent; dxp is then folded
//              back into dx through the maps (the transpose of padding).
//   bwd_weight dw[r][s]   = sum_n sum_oh,ow dy[oh][ow] * xp[oh*sh + r*dh][ow*sw + s*dw]
// Each work item owns its output plane, so the summation order is fixed.

// Padded rows [ph0, ph1) of the plane.
template <class T>
inline void pad_rows(const ConvArgs<T>& a, const T* xc, T* out, int64_t ph0, int64_t ph1) {
  const Conv2dParams& p = *a.p;
  const int64_t wp = p.w + p.pad_l + p.pad_r;
  for (int64_t ph = ph0; ph < ph1; ++ph) {
    T* o = out + ph * wp;
    const int64_t ih = a.row_map[ph];
    if (ih < 0) {
      for (int64_t q = 0; q < wp; ++q) o[q] = T(0);
      continue;
    }
    const T* xr = xc + ih * p.w;
    for (int64_t q = 0; q < p.pad_l; ++q) o[q] = a.col_map[q] >= 0 ? xr[a.col_map[q]] : T(0);
    __builtin_memcpy(o + p.pad_l, xr, sizeof(T) * static_cast<size_t>(p.w));
    for (int64_t q = p.pad_l + p.w; q < wp; ++q) o[q] = a.col_map[q] >= 0 ? xr[a.col_map[q]] : T(0);
  }
}

template <class T>
inline void pad_plane(const ConvArgs<T>& a, const T* xc, T* out) {
  pad_rows(a, xc, out, 0, a.p->h + a.p->pad_t + a.p->pad_b);
}

// Pads the rows output row oh reads that are not padded yet (rows [0, ready) are): the plane is
// built just ahead of its first use, so the loads of x from memory overlap the arithmetic
// instead of all coming first.
template <class T>
inline void pad_ahead(const ConvArgs<T>& a, const T* xc, T* out, int64_t oh, int64_t& ready) {
  const Conv2dParams& p = *a.p;
  const int64_t need = std::min(p.h + p.pad_t + p.pad_b, oh * p.stride_h + (p.r - 1) * p.dil_h + 1);
  if (need > ready) {
    pad_rows(a, xc, out, ready, need);
    ready = need;
  }
}

// NV output vectors of row yr from output column o (the last one no further than ow - L).
template <class T, int S, int NV>
inline void dw_fwd_vecs(const ConvArgs<T>& a, const T* x0, const T* wk, T bias, T* yr, int64_t o) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  const Conv2dParams& p = *a.p;
  const int64_t wp = p.w + p.pad_l + p.pad_r, sw = p.stride_w;
  int64_t pos[NV];
  for (int v = 0; v < NV; ++v) pos[v] = std::min<int64_t>(o + v * L, p.ow - L);
  vec acc[NV];
  for (int v = 0; v < NV; ++v) acc[v] = splat<T>(bias);
  for (int64_t r = 0; r < p.r; ++r) {
    const T* xr = x0 + r * p.dil_h * wp;
    for (int64_t s = 0; s < p.s; ++s) {
      const T wv = wk[r * p.s + s];
      for (int v = 0; v < NV; ++v) acc[v] += wv * load_strided<T, S>(xr + pos[v] * sw + s * p.dil_w, sw);
    }
  }
  for (int v = 0; v < NV; ++v) storeu(yr + pos[v], acc[v]);
}

// The padded plane xp of input plane xc is built row by row (pad_ahead).
template <class T, int S>
void dw_fwd_plane(const ConvArgs<T>& a, const T* xc, T* xp, const T* wk, T bias, T* y) {
  constexpr int L = V<T>::L;
  const Conv2dParams& p = *a.p;
  const int64_t wp = p.w + p.pad_l + p.pad_r, sw = p.stride_w;
  int64_t ready = 0;
  for (int64_t oh = 0; oh < p.oh; ++oh) {
    pad_ahead(a, xc, xp, oh, ready);
    T* yr = y + oh * p.ow;
    const T* x0 = xp + oh * p.stride_h * wp;
    if (p.ow >= L) {
      // Up to four vectors at once (independent accumulators); the last vector of a row is moved
      // back to end at ow, recomputing a few outputs with the same sums (112 = 4 + 3 vectors, 124 = 4 + 4).
      int64_t o = 0;
      for (; o + 4 * L <= p.ow; o += 4 * L) dw_fwd_vecs<T, S, 4>(a, x0, wk, bias, yr, o);
      switch ((p.ow - o + L - 1) / L) {
        case 4: dw_fwd_vecs<T, S, 4>(a, x0, wk, bias, yr, o); break;
        case 3: dw_fwd_vecs<T, S, 3>(a, x0, wk, bias, yr, o); break;
        case 2: dw_fwd_vecs<T, S, 2>(a, x0, wk, bias, yr, o); break;
        case 1: dw_fwd_vecs<T, S, 1>(a, x0, wk, bias, yr, o); break;
        default: break;
      }
    } else {
      for (int64_t ow = 0; ow < p.ow; ++ow) {
        T acc = bias;
        for (int64_t r = 0; r < p.r; ++r)
          for (int64_t s = 0; s < p.s; ++s) acc += wk[r * p.s + s] * x0[r * p.dil_h * wp + ow * sw + s * p.dil_w];
        yr[ow] = acc;
      }
    }
  }
}

template <class T>
void dw_fwd(const ConvArgs<T>& a, int64_t p0, int64_t p1) {
  const Conv2dParams& p = *a.p;
  const int64_t kg = p.k / p.groups, hw = p.h * p.w, rs = p.r * p.s;
  T* xp = a.ws;
  for (int64_t plane = p0; plane < p1; ++plane) {
    const int64_t n = plane / p.k, k = plane % p.k, g = k / kg;
    const T* xc = a.x + (n * p.c + g) * hw;
    const T bias = a.b ? a.b[k] : T(0);
    T* y = a.y + plane * p.oh * p.ow;
    if (p.stride_w == 1) dw_fwd_plane<T, 1>(a, xc, xp, a.w + k * rs, bias, y);
    else if (p.stride_w == 2) dw_fwd_plane<T, 2>(a, xc, xp, a.w + k * rs, bias, y);
    else dw_fwd_plane<T, 0>(a, xc, xp, a.w + k * rs, bias, y);
  }
}

template <class T>
void dw_bwd_data(const ConvArgs<T>& a, int64_t p0, int64_t p1) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  const Conv2dParams& p = *a.p;
  const int64_t kg = p.k / p.groups, hw = p.h * p.w, rs = p.r * p.s;
  const int64_t hp = p.h + p.pad_t + p.pad_b, wp = p.w + p.pad_l + p.pad_r;
  const int64_t eh = (p.r - 1) * p.dil_h, ew = (p.s - 1) * p.dil_w, uw = wp + ew;
  T* dxp = a.ws;
  T* u = a.ws + hp * wp;
  // Every plane writes dy to the same positions of u, so the zeros around them are set once.
  for (int64_t i = 0; i < (hp + eh) * uw; ++i) u[i] = T(0);
  for (int64_t plane = p0; plane < p1; ++plane) {
    const int64_t n = plane / p.c, c = plane % p.c;  // cg == 1: group c
    if (kg > 1 || wp < L)  // accumulated over filters (else each row is written whole below)
      for (int64_t i = 0; i < hp * wp; ++i) dxp[i] = T(0);
    for (int64_t k = c * kg; k < (c + 1) * kg; ++k) {
      const T* wk = a.w + k * rs;
      const T* dyp = a.dy + (n * p.k + k) * p.oh * p.ow;
      for (int64_t oh = 0; oh < p.oh; ++oh) {
        T* ur = u + (oh * p.stride_h + eh) * uw + ew;
        const T* dr = dyp + oh * p.ow;
        if (p.stride_w == 1) {
          __builtin_memcpy(ur, dr, sizeof(T) * static_cast<size_t>(p.ow));
        } else {
          for (int64_t ow = 0; ow < p.ow; ++ow) ur[ow * p.stride_w] = dr[ow];
        }
      }
      for (int64_t ph = 0; ph < hp; ++ph) {
        if (a.row_map[ph] < 0) continue;  // a zero-padding row: nothing to fold back
        T* d = dxp + ph * wp;
        const T* u0 = u + ph * uw;
        if (kg == 1 && wp >= L) {
          // One filter: the row is written, not accumulated, so the last vectors may overlap.
          for (int64_t q0 = 0; q0 < wp; q0 += 4 * L) {
            const int64_t q = q0 + 4 * L <= wp ? q0 : (wp >= 4 * L ? wp - 4 * L : q0);
            const int nv = wp >= 4 * L ? 4 : static_cast<int>((wp - q + L - 1) / L);
            vec acc[4] = {};
            for (int64_t r = 0; r < p.r; ++r) {
              const T* ur = u0 + (eh - r * p.dil_h) * uw + ew;
              for (int64_t s = 0; s < p.s; ++s) {
                const T wv = wk[r * p.s + s];
                for (int v = 0; v < 4; ++v) {
                  const int64_t qv = q + v * L + L <= wp ? q + v * L : wp - L;
                  if (v < nv) acc[v] += wv * loadu(ur - s * p.dil_w + qv);
                }
              }
            }
            for (int v = 0; v < nv; ++v) storeu(d + (q + v * L + L <= wp ? q + v * L : wp - L), acc[v]);
            if (wp < 4 * L) break;
          }
          continue;
        }
        int64_t q = 0;
        for (; q + 4 * L <= wp; q += 4 * L) {  // four independent accumulators
          vec acc[4];
          for (int v = 0; v < 4; ++v) acc[v] = loadu(d + q + v * L);
          for (int64_t r = 0; r < p.r; ++r) {
            const T* ur = u0 + (eh - r * p.dil_h) * uw + q + ew;
            for (int64_t s = 0; s < p.s; ++s) {
              const T wv = wk[r * p.s + s];
              for (int v = 0; v < 4; ++v) acc[v] += wv * loadu(ur - s * p.dil_w + v * L);
            }
          }
          for (int v = 0; v < 4; ++v) storeu(d + q + v * L, acc[v]);
        }
        for (; q + L <= wp; q += L) {
          vec acc = loadu(d + q);
          for (int64_t r = 0; r < p.r; ++r) {
            const T* ur = u0 + (eh - r * p.dil_h) * uw + q + ew;
            for (int64_t s = 0; s < p.s; ++s) acc += wk[r * p.s + s] * loadu(ur - s * p.dil_w);
          }
          storeu(d + q, acc);
        }
        for (; q < wp; ++q) {
          T acc = d[q];
          for (int64_t r = 0; r < p.r; ++r)
            for (int64_t s = 0; s < p.s; ++s) acc += wk[r * p.s + s] * u0[(eh - r * p.dil_h) * uw + q + ew - s * p.dil_w];
          d[q] = acc;
        }
      }
    }
    // Fold the padded gradient into dx: every padded coordinate adds into the pixel it copied.
    T* dx = a.dx + plane * hw;
    if (p.mode == PadMode::zeros) {  // only the interior maps anywhere: a copy
      for (int64_t ih = 0; ih < p.h; ++ih)
        __builtin_memcpy(dx + ih * p.w, dxp + (ih + p.pad_t) * wp + p.pad_l, sizeof(T) * static_cast<size_t>(p.w));
      continue;
    }
    for (int64_t i = 0; i < hw; ++i) dx[i] = T(0);
    for (int64_t ph = 0; ph < hp; ++ph) {
      const int64_t ih = a.row_map[ph];
      if (ih < 0) continue;
      T* dr = dx + ih * p.w;
      const T* d = dxp + ph * wp;
      for (int64_t q = 0; q < p.pad_l; ++q)
        if (a.col_map[q] >= 0) dr[a.col_map[q]] += d[q];
      for (int64_t iw = 0; iw < p.w; ++iw) dr[iw] += d[p.pad_l + iw];
      for (int64_t q = p.pad_l + p.w; q < wp; ++q)
        if (a.col_map[q] >= 0) dr[a.col_map[q]] += d[q];
    }
  }
}

// dw[t] += sum over the plane of dy * x at tap t, for NT taps at once (independent accumulators,
// dy loaded once per vector). Lanes are summed in order, then the scalar tail.
template <class T, int S, int NT>
void dw_taps_dot(const ConvArgs<T>& a, const T* xc, T* xp, int64_t& ready, const T* dyp, int64_t t0, T* dw) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  const Conv2dParams& p = *a.p;
  const int64_t wp = p.w + p.pad_l + p.pad_r, sw = p.stride_w;
  int64_t off[NT];
  for (int t = 0; t < NT; ++t) off[t] = ((t0 + t) / p.s) * p.dil_h * wp + ((t0 + t) % p.s) * p.dil_w;
  vec acc[NT];
  T tail[NT];
  for (int t = 0; t < NT; ++t) {
    acc[t] = vec{};
    tail[t] = T(0);
  }
  for (int64_t oh = 0; oh < p.oh; ++oh) {
    pad_ahead(a, xc, xp, oh, ready);
    const T* xr = xp + oh * p.stride_h * wp;
    const T* dyr = dyp + oh * p.ow;
    int64_t ow = 0;
    for (; ow + L <= p.ow; ow += L) {
      const vec g = loadu(dyr + ow);
      for (int t = 0; t < NT; ++t) acc[t] += g * load_strided<T, S>(xr + off[t] + ow * sw, sw);
    }
    for (; ow < p.ow; ++ow)
      for (int t = 0; t < NT; ++t) tail[t] += dyr[ow] * xr[off[t] + ow * sw];
  }
  for (int t = 0; t < NT; ++t) {
    T sum = T(0);
    for (int l = 0; l < L; ++l) sum += acc[t][l];
    dw[t0 + t] += sum + tail[t];
  }
}

template <class T, int S>
void dw_all_taps(const ConvArgs<T>& a, const T* xc, T* xp, const T* dyp, T* dw) {
  const int64_t rs = a.p->r * a.p->s;
  int64_t ready = 0;
  int64_t t = 0;
  for (; t + 9 <= rs; t += 9) dw_taps_dot<T, S, 9>(a, xc, xp, ready, dyp, t, dw);
  switch (rs - t) {
    case 8: dw_taps_dot<T, S, 8>(a, xc, xp, ready, dyp, t, dw); break;
    case 7: dw_taps_dot<T, S, 7>(a, xc, xp, ready, dyp, t, dw); break;
    case 6: dw_taps_dot<T, S, 6>(a, xc, xp, ready, dyp, t, dw); break;
    case 5: dw_taps_dot<T, S, 5>(a, xc, xp, ready, dyp, t, dw); break;
    case 4: dw_taps_dot<T, S, 4>(a, xc, xp, ready, dyp, t, dw); break;
    case 3: dw_taps_dot<T, S, 3>(a, xc, xp, ready, dyp, t, dw); break;
    case 2: dw_taps_dot<T, S, 2>(a, xc, xp, ready, dyp, t, dw); break;
    case 1: dw_taps_dot<T, S, 1>(a, xc, xp, ready, dyp, t, dw); break;
    default: break;
  }
}

template <class T>
void dw_bwd_weight(const ConvArgs<T>& a, int64_t p0, int64_t p1) {
  const Conv2dParams& p = *a.p;
  const int64_t kg = p.k / p.groups, hw = p.h * p.w, rs = p.r * p.s;
  T* xp = a.ws;
  for (int64_t plane = p0; plane < p1; ++plane) {  // plane = k (cg == 1)
    const int64_t k = plane, g = k / kg;
    T* dw = a.dw + plane * rs;
    for (int64_t i = 0; i < rs; ++i) dw[i] = T(0);
    for (int64_t n = 0; n < p.n; ++n) {
      const T* xc = a.x + (n * p.c + g) * hw;
      const T* dyp = a.dy + (n * p.k + k) * p.oh * p.ow;
      if (p.stride_w == 1) dw_all_taps<T, 1>(a, xc, xp, dyp, dw);
      else if (p.stride_w == 2) dw_all_taps<T, 2>(a, xc, xp, dyp, dw);
      else dw_all_taps<T, 0>(a, xc, xp, dyp, dw);
    }
  }
}

// ---- Weight gradient for layers with few input channels (groups == 1, C <= kSmallC) ----------
// dw[k][t] (t = (cl*R + r)*S + s) = sum_n sum_oh,ow dy[n][k][oh][ow] * xp_cl[oh*sh + r*dh][ow*sw + s*dw]
// with the C input planes of image n padded once into the scratch. Register blocks of KB filters
// x TB taps (independent vector accumulators, dy and x each loaded once per block and vector);
// every dw element has its own chain (vector lanes in output order, lanes summed in order, then
// the scalar tail), so the blocking and the thread split never change a result.
constexpr int64_t kSmallC = 4;

// EXACT: whole vectors per output row (p.ow % L == 0), compiled without the row-end paths,
// whose extra live values made the compiler spill accumulators at every row end.
template <class T, int S, int KB, int TB, bool EXACT>
void small_c_block(const ConvArgs<T>& a, const T* xp, int64_t n, int64_t k0, int64_t t0, T* vb, T* dw) {
  using vec = typename V<T>::vec;
  constexpr int L = V<T>::L;
  const Conv2dParams& p = *a.p;
  const int64_t hp = p.h + p.pad_t + p.pad_b, wp = p.w + p.pad_l + p.pad_r, sw = p.stride_w;
  const int64_t rs = p.r * p.s, rows = p.c * rs;
  int64_t off[TB];
  for (int t = 0; t < TB; ++t) {
    const int64_t tt = t0 + t, cl = tt / rs, r = (tt / p.s) % p.r, s = tt % p.s;
    off[t] = cl * hp * wp + r * p.dil_h * wp + s * p.dil_w;
  }
  const T* dyk[KB];
  for (int kk = 0; kk < KB; ++kk) dyk[kk] = a.dy + (n * p.k + k0 + kk) * p.oh * p.ow;
  vec acc[KB][TB];
  T tail[KB][TB];
  for (int kk = 0; kk < KB; ++kk)
    for (int t = 0; t < TB; ++t) {
      acc[kk][t] = loadu(vb + ((k0 + kk) * rows + t0 + t) * L);  // lanes carried across images
      tail[kk][t] = T(0);
    }
  for (int64_t oh = 0; oh < p.oh; ++oh) {
    const T* xr = xp + oh * p.stride_h * wp;
    int64_t ow = 0;
    for (; ow + L <= p.ow; ow += L) {
      vec g[KB];
      for (int kk = 0; kk < KB; ++kk) g[kk] = loadu(dyk[kk] + oh * p.ow + ow);
      for (int t = 0; t < TB; ++t) {
        const vec xv = load_strided<T, S>(xr + off[t] + ow * sw, sw);
        for (int kk = 0; kk < KB; ++kk) acc[kk][t] += g[kk] * xv;
      }
    }
    if constexpr (EXACT) continue;
    if (ow < p.ow && p.ow >= L) {  // the last L outputs again, the lanes already summed zeroed
      const int64_t o = p.ow - L;   // (in x too: 0 * inf would turn an inf gradient into NaN)
      typename V<T>::ivec lane;
      for (int l = 0; l < L; ++l) lane[l] = l;
      const auto fresh = lane >= static_cast<int>(ow - o);
      vec g[KB];
      for (int kk = 0; kk < KB; ++kk) g[kk] = fresh ? loadu(dyk[kk] + oh * p.ow + o) : vec{};
      for (int t = 0; t < TB; ++t) {
        const vec xv = fresh ? load_strided<T, S>(xr + off[t] + o * sw, sw) : vec{};
        for (int kk = 0; kk < KB; ++kk) acc[kk][t] += g[kk] * xv;
      }
      ow = p.ow;
    }
    for (; ow < p.ow; ++ow)
      for (int kk = 0; kk < KB; ++kk)
        for (int t = 0; t < TB; ++t) tail[kk][t] += dyk[kk][oh * p.ow + ow] * xr[off[t] + ow * sw];
  }
  for (int kk = 0; kk < KB; ++kk)
    for (int t = 0; t < TB; ++t) {
      storeu(vb + ((k0 + kk) * rows + t0 + t) * L, acc[kk][t]);
      if constexpr (!EXACT) dw[(k0 + kk) * rows + t0 + t] += tail[kk][t];
    }
}

// Filters [k0, k1) x taps [t0, t1) of image n.
template <class T, int S, bool EXACT>
void small_c_range(const ConvArgs<T>& a, const T* xp, int64_t n, int64_t k0, int64_t k1, int64_t t0, int64_t t1,
                   T* vb, T* dw) {
  constexpr int KB = 4, TB = 6;
  int64_t k = k0;
  for (; k + KB <= k1; k += KB) {
    int64_t t = t0;
    for (; t + TB <= t1; t += TB) small_c_block<T, S, KB, TB, EXACT>(a, xp, n, k, t, vb, dw);
    for (; t + 3 <= t1; t += 3) small_c_block<T, S, KB, 3, EXACT>(a, xp, n, k, t, vb, dw);
    for (; t < t1; ++t) small_c_block<T, S, KB, 1, EXACT>(a, xp, n, k, t, vb, dw);
  }
  for (; k < k1; ++k) {
    int64_t t = t0;
    for (; t + TB <= t1; t += TB) small_c_block<T, S, 1, TB, EXACT>(a, xp, n, k, t, vb, dw);
    for (; t + 3 <= t1; t += 3) small_c_block<T, S, 1, 3, EXACT>(a, xp, n, k, t, vb, dw);
    for (; t < t1; ++t) small_c_block<T, S, 1, 1, EXACT>(a, xp, n, k, t, vb, dw);
  }
}

template <class T>
void small_c_bwd_weight(const ConvArgs<T>& a, int64_t p0, int64_t p1) {
  constexpr int L = V<T>::L;
  const Conv2dParams& p = *a.p;
  const int64_t hw = p.h * p.w, rs = p.r * p.s, cg = p.c;  // groups == 1
  const int64_t hp = p.h + p.pad_t + p.pad_b, wp = p.w + p.pad_l + p.pad_r;
  T* xp = a.ws;
  T* vb = a.ws + cg * hp * wp + 64;  // vector partial sums, L lanes per dw element
  // dw holds the scalar tails until the end; vb the vector lanes (carried across images).
  for (int64_t i = p0 * rs; i < p1 * rs; ++i) a.dw[i] = T(0);  // planes k*cg + cl, rs taps each
  for (int64_t i = p0 * rs * L; i < p1 * rs * L; ++i) vb[i] = T(0);
  // Whole filters in the middle, partial ones (a thread range may start or end inside a filter)
  // at the ends: same arithmetic either way.
  const int64_t ka = (p0 + cg - 1) / cg, kb = p1 / cg;
  for (int64_t n = 0; n < p.n; ++n) {
    for (int64_t cl = 0; cl < cg; ++cl) pad_plane(a, a.x + (n * p.c + cl) * hw, xp + cl * hp * wp);
    auto run = [&](int64_t k0, int64_t k1, int64_t t0, int64_t t1) {
      if (k0 >= k1 || t0 >= t1) return;
      if (p.ow % L == 0 && p.stride_w == 1) small_c_range<T, 1, true>(a, xp, n, k0, k1, t0, t1, vb, a.dw);
      else if (p.stride_w == 1) small_c_range<T, 1, false>(a, xp, n, k0, k1, t0, t1, vb, a.dw);
      else if (p.stride_w == 2) small_c_range<T, 2, false>(a, xp, n, k0, k1, t0, t1, vb, a.dw);
      else small_c_range<T, 0, false>(a, xp, n, k0, k1, t0, t1, vb, a.dw);
    };
    if (ka > kb) {  // the range lies inside one filter
      run(p0 / cg, p0 / cg + 1, (p0 % cg) * rs, (p1 - (p0 / cg) * cg) * rs);
      continue;
    }
    run(ka - 1, ka, (p0 - (ka - 1) * cg) * rs, cg * rs);  // head: filter ka-1 from plane p0 (if partial)
    run(ka, kb, 0, cg * rs);
    run(kb, kb + 1, 0, (p1 - kb * cg) * rs);  // tail: filter kb up to plane p1 (if partial)
  }
  // dw = (sum of the lanes in order) + the scalar tails.
  for (int64_t i = p0 * rs; i < p1 * rs; ++i) {
    T sum = T(0);
    for (int l = 0; l < L; ++l) sum += vb[i * L + l];
    a.dw[i] = sum + a.dw[i];
  }
}
