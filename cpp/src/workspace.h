// Workspace: 64-byte aligned buffers. scratch() are small per-thread buffers that live as long
// as their thread (GEMM packing panels), so they are allocated once, not on every call.
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

// Per-thread scratch slot `slot` (0, 1 or 2) with room for at least n elements of T.
template <class T>
T* scratch(int slot, size_t n) {
  struct Slot {
    void* p = nullptr;
    size_t bytes = 0;
    ~Slot() { std::free(p); }
  };
  thread_local Slot slots[3];
  Slot& s = slots[slot];
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

}  // namespace pyconv
