// Overflow-checked size arithmetic (every product of sizes goes through here before an
// allocation) and the workspace budget.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace pyconv {

// Largest element count we accept for one array: keeps byte sizes of float64 arrays below 2^62.
constexpr int64_t kMaxNumel = int64_t{1} << 59;

inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r) || r > kMaxNumel)
    throw std::invalid_argument(std::string(what) + ": size overflows (" + std::to_string(a) + " * " +
                                std::to_string(b) + ")");
  return r;
}

inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r) || r > kMaxNumel)
    throw std::invalid_argument(std::string(what) + ": size overflows (" + std::to_string(a) + " + " +
                                std::to_string(b) + ")");
  return r;
}

inline int64_t checked_numel(std::initializer_list<int64_t> dims, const char* what) {
  int64_t n = 1;
  for (int64_t d : dims) n = checked_mul(n, d, what);
  return n;
}

inline std::string s(int64_t v) { return std::to_string(v); }  // for messages

// Parameter validation of every operator: std::invalid_argument("<op>: <msg>") (ValueError in Python).
[[noreturn]] inline void fail(const char* op, const std::string& msg) {
  throw std::invalid_argument(std::string(op) + ": " + msg);
}
// The message is built only on failure: validation runs on every call, tiny ones included.
#define PYCONV_REQUIRE(op, ok, msg)      \
  do {                                   \
    if (!(ok)) ::pyconv::fail(op, msg); \
  } while (0)

// Division rounding toward negative infinity (b > 0), as PyTorch's output-size formulas.
inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Bytes the im2col column buffers of one call may use in total (default 64 MiB).
size_t workspace_limit();
void set_workspace_limit(size_t bytes);

}  // namespace pyconv
