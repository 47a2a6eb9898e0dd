#ifndef EDGETRAIL_CBPF_SHIM_H
#define EDGETRAIL_CBPF_SHIM_H
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
/* The structs the tc programs and user space share. */
#include "../../bpf/datapath.h"
#endif
