/* The datapath's maps and events as both sides see them: the tc programs (datapath.bpf.c)
 * and the Datapath Manager in user space (Sources/EdgetrailDatapath, through CBPF).
 * Addresses and ports are in network byte order, as on the wire. */
#ifndef EDGETRAIL_DATAPATH_H
#define EDGETRAIL_DATAPATH_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define ET_MAX_RULES 1024
/* Pods one redirect rule can spread flows over. */
#define ET_MAX_BACKENDS 8
#define ET_MAX_FLOWS 65536
/* The flow event ring buffer, and how much may wait in it before the reader is woken (the
 * reader also reads at least every 100 ms on its own). */
#define ET_EVENTS_BYTES (1024 * 1024)
#define ET_EVENTS_WAKEUP_BYTES (128 * 1024)

/* The values of edgetrail.v1.DatapathAction. */
enum et_action {
	ET_ACTION_UNSPECIFIED = 0,
	ET_ACTION_REDIRECT = 1,
	ET_ACTION_COPY = 2,
	ET_ACTION_DENY = 3,
	ET_ACTION_RATELIMIT = 4,
	ET_ACTION_PASS = 5,
};

enum et_event_type {
	ET_EVENT_FLOW_START = 1,
	ET_EVENT_FLOW_END = 2,
};

/* The values of edgetrail.v1.FlowEndReason. */
enum et_end_reason {
	ET_END_NONE = 0,
	ET_END_FIN = 1,
	ET_END_RST = 2,
	ET_END_IDLE = 3,
};

/* A connection, oriented client -> server (the direction it entered the node). */
struct et_tuple {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* Rules with a port: longest prefix over (generation, port, address). */
struct et_port_key {
	__u32 prefixlen; /* 8 + 16 + address prefix length */
	__u8 generation;
	__u8 port[2];
	__u8 addr[4];
	__u8 pad;
};

/* Rules for any port: longest prefix over (generation, address). */
struct et_any_key {
	__u32 prefixlen; /* 8 + address prefix length */
	__u8 generation;
	__u8 addr[4];
	__u8 pad[3];
};

struct et_rule {
	__u32 id;     /* the manager's id for this rule in this generation (stats, buckets, backends) */
	__u32 action; /* enum et_action */
	__u32 rank;   /* specificity: 2 x prefix length, + 1 with a port; the higher wins */
	__u32 backend_count;
	__u64 rate_bytes_per_second;
	__u64 burst_bytes;
};

/* Where a redirect or copy sends packets: the node side of a pod's veth. */
struct et_backend {
	__u32 ifindex;
	__u8 pod_mac[6];  /* destination MAC: the pod's end of the veth */
	__u8 node_mac[6]; /* source MAC: the node's end */
};

struct et_backend_key {
	__u32 rule_id;
	__u32 index;
};

struct et_rule_stats {
	__u64 packets;
	__u64 bytes;
	__u64 drops;
};

struct et_bucket {
	struct bpf_spin_lock lock;
	__u64 tokens;
	__u64 last_ns;
};

struct et_flow {
	/* The rule that matched, as of rule set `rules_version`: later packets of the flow use it
	 * without looking the rules up again, until another rule set is applied. */
	struct et_rule rule;
	__u32 rules_version;
	__u32 has_rule;
	/* No last-seen time: reading a clock on every packet costs more than the rest of the
	 * accounting; the idle sweep in user space notices a flow whose counters stopped moving. */
	__u64 start_ns;
	__u64 packets_in;
	__u64 packets_out;
	__u64 bytes_in;
	__u64 bytes_out;
	__u64 drops;
	__u32 rule_id;
	__u32 action;
	__u32 fin_in;
	__u32 fin_out;
};

struct et_config {
	__u32 generation; /* which rules are active: 0 or 1 */
	__u32 client_ifindex;
	__u32 rules_version; /* bumped by every rule set applied (invalidates the flows' cached rule) */
	__u32 pad;
};

/* Per-rule counters live in a per-CPU array at (rule id % ET_STATS_SLOTS): ids are handed out
 * in sequence and at most two sets of ET_MAX_RULES are alive, so live rules never share a slot. */
#define ET_STATS_SLOTS (2 * ET_MAX_RULES)

struct et_event {
	__u32 type;   /* enum et_event_type */
	__u32 reason; /* enum et_end_reason */
	struct et_tuple tuple;
	__u32 rule_id;
	__u32 action;
	__u64 cookie;
	__u64 start_ns; /* CLOCK_MONOTONIC */
	__u64 end_ns;
	__u64 packets_in;
	__u64 packets_out;
	__u64 bytes_in;
	__u64 bytes_out;
	__u64 drops;
};

#endif
