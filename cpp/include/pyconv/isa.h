// Instruction-set selection: the kernels compiled for each ISA and the one in use.
// active = min(detected CPU, PYCONV_MAX_ISA environment variable, set_max_isa(), best compiled).
#pragma once
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
Isa active_isa();                            // what kernels run with now
std::vector<std::string> cpu_features();     // for `pyconv info`

}  // namespace pyconv
