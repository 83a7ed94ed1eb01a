// Enums and names expanded from registry.def (no pybind11 here).
#pragma once
#include <cstring>

namespace pyconv {

enum class ConvAlgo : int {
#define PYCONV_ALGO(id, name, log) id,
#include "pyconv/registry.def"
};
enum class PadMode : int {
#define PYCONV_PAD_MODE(id) id,
#include "pyconv/registry.def"
};
enum class ConvDir : int {
#define PYCONV_DIR(id) id,
#include "pyconv/registry.def"
};
enum class Isa : int {
#define PYCONV_ISA_DEF(id, vec_bytes) id,
#include "pyconv/registry.def"
};

namespace registry {
constexpr const char* kAlgoNames[] = {
#define PYCONV_ALGO(id, name, log) name,
#include "pyconv/registry.def"
};
constexpr const char* kAlgoLogNames[] = {
#define PYCONV_ALGO(id, name, log) log,
#include "pyconv/registry.def"
};
constexpr const char* kPadModeNames[] = {
#define PYCONV_PAD_MODE(id) #id,
#include "pyconv/registry.def"
};
constexpr const char* kDirNames[] = {
#define PYCONV_DIR(id) #id,
#include "pyconv/registry.def"
};
constexpr const char* kIsaNames[] = {
#define PYCONV_ISA_DEF(id, vec_bytes) #id,
#include "pyconv/registry.def"
};
constexpr int kIsaVecBytes[] = {
#define PYCONV_ISA_DEF(id, vec_bytes) vec_bytes,
#include "pyconv/registry.def"
};
}  // namespace registry

constexpr int kNumConvAlgo = sizeof(registry::kAlgoNames) / sizeof(registry::kAlgoNames[0]);
constexpr int kNumPadMode = sizeof(registry::kPadModeNames) / sizeof(registry::kPadModeNames[0]);
constexpr int kNumConvDir = sizeof(registry::kDirNames) / sizeof(registry::kDirNames[0]);
constexpr int kNumIsa = sizeof(registry::kIsaNames) / sizeof(registry::kIsaNames[0]);

constexpr const char* algo_name(ConvAlgo a) { return registry::kAlgoNames[static_cast<int>(a)]; }
constexpr const char* algo_log_name(ConvAlgo a) { return registry::kAlgoLogNames[static_cast<int>(a)]; }
constexpr const char* pad_mode_name(PadMode m) { return registry::kPadModeNames[static_cast<int>(m)]; }
constexpr const char* dir_name(ConvDir d) { return registry::kDirNames[static_cast<int>(d)]; }
constexpr const char* isa_name(Isa i) { return registry::kIsaNames[static_cast<int>(i)]; }
// SIMD vector width of an ISA in bytes (the one place it is written).
constexpr int isa_vec_bytes(Isa i) { return registry::kIsaVecBytes[static_cast<int>(i)]; }

// Position of `s` in a name table of n entries, or -1.
inline int registry_index(const char* const* names, int n, const char* s) {
  for (int i = 0; i < n; ++i)
    if (std::strcmp(names[i], s) == 0) return i;
  return -1;
}

}  // namespace pyconv
