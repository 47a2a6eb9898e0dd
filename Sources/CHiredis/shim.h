#ifndef EDGETRAIL_CHIREDIS_SHIM_H
#define EDGETRAIL_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#endif
