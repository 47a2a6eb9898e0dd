// SPDX-License-Identifier: GPL-2.0
/* Reading a packet's flow tuple, shared by the datapath (datapath.bpf.c) and the benchmark's
 * floor programs (floors.bpf.c), so both parse exactly alike. Include after vmlinux.h,
 * bpf_endian.h and datapath.h. */
#ifndef EDGETRAIL_PACKET_H
#define EDGETRAIL_PACKET_H

#define TC_ACT_OK 0
#define ETH_P_IP 0x0800
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

struct packet {
	struct et_tuple tuple;
	__u8 tcp_flags; /* FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10 */
	__u32 length;
};

static __always_inline int parse(struct __sk_buff *skb, struct packet *packet)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl < 5)
		return -1;
	__builtin_memset(packet, 0, sizeof(*packet));
	packet->tuple.saddr = ip->saddr;
	packet->tuple.daddr = ip->daddr;
	packet->tuple.proto = ip->protocol;
	packet->length = skb->len;
	void *l4 = (void *)ip + ip->ihl * 4;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > data_end)
			return -1;
		packet->tuple.sport = tcp->source;
		packet->tuple.dport = tcp->dest;
		packet->tcp_flags = ((__u8 *)tcp)[13];
	} else if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > data_end)
			return -1;
		packet->tuple.sport = udp->source;
		packet->tuple.dport = udp->dest;
	}
	return 0;
}

#endif
