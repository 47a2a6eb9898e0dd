// SPDX-License-Identifier: GPL-2.0
/* The floors `edgetrail bench datapath` prints beside the datapath's figures: what the kernel's
 * run-time statistics and a program that accounts flows cost by themselves. Benchmark-only, so
 * kept out of the datapath's own object (the Datapath Manager never loads them). */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "datapath.h"
#include "packet.h"

char LICENSE[] SEC("license") = "GPL";

/* A flow table like the datapath's, empty: the look-up misses, as a new flow's does. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ET_MAX_FLOWS);
	__type(key, struct et_tuple);
	__type(value, struct et_flow);
} flows SEC(".maps");

/* Does nothing: what attaching a tc program and the statistics cost by themselves. */
SEC("tc")
int edgetrail_floor(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

/* The least a program that accounts flows does: parse the packet and look its flow up. */
SEC("tc")
int edgetrail_floor_lookup(struct __sk_buff *skb)
{
	struct packet packet;
	if (parse(skb, &packet) < 0)
		return TC_ACT_OK;
	struct et_flow *flow = bpf_map_lookup_elem(&flows, &packet.tuple);
	if (flow)
		flow->packets_in += 1;
	return TC_ACT_OK;
}
