// SPDX-License-Identifier: GPL-2.0
/* A datapath the verifier must refuse (it reads packet bytes without checking data_end): the
 * tests check that the refusal reaches the operator with the verifier's own words. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tc")
int edgetrail_ingress(struct __sk_buff *skb)
{
	unsigned char *data = (void *)(long)skb->data;
	return data[100];
}

SEC("tc")
int edgetrail_egress(struct __sk_buff *skb)
{
	return 0;
}
