#ifndef EDGETRAIL_CRDKAFKA_SHIM_H
#define EDGETRAIL_CRDKAFKA_SHIM_H
#include <librdkafka/rdkafka.h>
#endif
