#define PYCONV_ISA scalar
#include "eltwise/eltwise_impl.h"
