#define PYCONV_ISA scalar
#include "pool2d/pool2d_direct_impl.h"
