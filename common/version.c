#include "version.h"

const char interestd_version[] = INTERESTD_VERSION;
