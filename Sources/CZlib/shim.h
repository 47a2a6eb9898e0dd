#ifndef EDGETRAIL_CZLIB_SHIM_H
#define EDGETRAIL_CZLIB_SHIM_H
#include <zlib.h>
#endif
