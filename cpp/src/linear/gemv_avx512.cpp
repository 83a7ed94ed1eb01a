#define PYCONV_ISA avx512
#include "linear/gemv_impl.h"
