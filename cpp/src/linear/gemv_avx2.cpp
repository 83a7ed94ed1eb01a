#define PYCONV_ISA avx2
#include "linear/gemv_impl.h"
