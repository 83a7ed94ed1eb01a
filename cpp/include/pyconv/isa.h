// Instruction-set selection: the kernels compiled for each ISA and the one in use.
// level = min(detected CPU, PYCONV_MAX_ISA environment variable, set_max_isa(), best compiled);
// the float kernels run at active_isa(), the best level at or below it that has them (avx512 at
// levels avx512_bf16 and amx).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "pyconv/registry.h"  // Isa, kNumIsa, isa_name, isa_vec_bytes

namespace pyconv {

Isa isa_from_name(const std::string& name);  // throws std::invalid_argument
Isa detected_isa();                          // best the CPU (and OS) supports
Isa best_compiled_isa();
std::vector<Isa> compiled_isas();
Isa max_isa();                               // the current cap
void set_max_isa(Isa isa);
Isa active_level();                          // the capped level (bfloat16 levels included)
Isa active_isa();                            // what the float32/float64 kernels run with now
std::vector<std::string> cpu_features();     // for `pyconv info`

// The kernel precision="bfloat16" convolutions run at the current level: "amx", "avx512_bf16"
// or "float32" (the operands rounded, then the float32 kernels).
const char* conv2d_bf16_kernel();
// Whether a layer with weights k x cg x r x s in `groups` groups runs on a bfloat16 kernel now
// (depthwise and thin groups keep their float32 kernels on the rounded operands).
bool conv2d_bf16_native(int64_t k, int64_t cg, int64_t r, int64_t s, int64_t groups);

}  // namespace pyconv
