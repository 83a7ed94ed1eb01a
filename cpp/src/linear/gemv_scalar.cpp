#define PYCONV_ISA scalar
#include "linear/gemv_impl.h"
