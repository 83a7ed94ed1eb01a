// Workspace: 64-byte aligned buffers. scratch() are small per-thread buffers that live as long
// as their thread (GEMM packing panels), so they are allocated once, not on every call.
// call_buffer() are the calling thread's large per-call buffers (Winograd's transformed data),
// kept for the next call: above glibc's mmap threshold (32 MiB at most) a fresh allocation
// faults in every page on every call. Each is bounded by the workspace limit of its call.
// Buffer is a per-call owning allocation (im2col columns); its size is capped by the caller.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <utility>

namespace pyconv {

inline void* aligned_alloc64(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

template <class T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t n) : p_(n ? static_cast<T*>(aligned_alloc64(n * sizeof(T))) : nullptr) {}
  Buffer(Buffer&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  Buffer& operator=(Buffer&& o) noexcept { std::swap(p_, o.p_); return *this; }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { std::free(p_); }
  T* get() const { return p_; }

 private:
  T* p_ = nullptr;
};

namespace workspace_detail {
struct Slot {
  void* p = nullptr;
  size_t bytes = 0;
  ~Slot() { std::free(p); }
};

// s grown to at least n elements of T (contents not kept).
template <class T>
T* grow(Slot& s, size_t n) {
  const size_t bytes = n * sizeof(T);
  if (s.bytes < bytes) {
    std::free(s.p);
    s.p = nullptr;
    s.bytes = 0;
    s.p = aligned_alloc64(bytes);
    s.bytes = bytes;
  }
  return static_cast<T*>(s.p);
}
}  // namespace workspace_detail

// Per-thread scratch slot `slot` (0 to 3) with room for at least n elements of T.
template <class T>
T* scratch(int slot, size_t n) {
  thread_local workspace_detail::Slot slots[4];
  return workspace_detail::grow<T>(slots[slot], n);
}

// The calling thread's call-level buffer `slot`, distinct from its scratch(): 0-5 the float
// kernels' (Winograd), 6-7 the bfloat16 convolution's, which may call the float kernels.
template <class T>
T* call_buffer(int slot, size_t n) {
  thread_local workspace_detail::Slot slots[8];
  return workspace_detail::grow<T>(slots[slot], n);
}

}  // namespace pyconv
