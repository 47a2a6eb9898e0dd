#ifndef EDGETRAIL_CLIBPQ_SHIM_H
#define EDGETRAIL_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
