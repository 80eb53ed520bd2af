// Declarations only (include/LibFuzzerDriver.h); a C target needs one source file.
#include "LibFuzzerDriver.h"
