// SPDX-License-Identifier: GPL-2.0
/* Edgetrail's programmable datapath: tc programs on the node's client-facing interface.
 *
 * ingress (client -> node): match the packet's destination against the active rules (most
 *   specific first), account the flow, then act: redirect into a pod (transparent: only the
 *   MACs change), copy to a tap pod, deny, rate-limit, or pass.
 * egress (node -> client): account the reply direction of known flows.
 *
 * Flow start and end (FIN both ways, RST) go to a ring buffer with the cookie user space bound
 * to the flow; a full ring buffer is counted in `lost`, a full flow table in `flows_untracked`,
 * never silent. Idle flows are swept
 * from user space. */
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "datapath.h"
#include "packet.h"

#define TC_ACT_SHOT 2

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct et_config);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 2 * ET_MAX_RULES);
	__type(key, struct et_port_key);
	__type(value, struct et_rule);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} port_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 2 * ET_MAX_RULES);
	__type(key, struct et_any_key);
	__type(value, struct et_rule);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} any_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * ET_MAX_RULES * ET_MAX_BACKENDS);
	__type(key, struct et_backend_key);
	__type(value, struct et_backend);
} backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ET_STATS_SLOTS);
	__type(key, __u32);
	__type(value, struct et_rule_stats);
} rule_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * ET_MAX_RULES);
	__type(key, __u32);
	__type(value, struct et_bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ET_MAX_FLOWS);
	__type(key, struct et_tuple);
	__type(value, struct et_flow);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ET_MAX_FLOWS);
	__type(key, struct et_tuple);
	__type(value, __u64);
} cookies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, ET_EVENTS_BYTES);
} events SEC(".maps");

/* Events the ring buffer had no room for. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* Flow starts the full `flows` table had no room for (each try: a SYN sent again counts again).
 * Their packets still pass under the rules, but they are not accounted and give no events. Per
 * CPU, like `lost`, so counting costs no shared cache line. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} flows_untracked SEC(".maps");

/* The active rule for a destination: the most specific of the best port rule and the best
 * any-port rule. */
static __always_inline struct et_rule *match(__u32 generation, __u32 daddr, __u16 dport)
{
	struct et_port_key port_key = {.prefixlen = 8 + 16 + 32, .generation = generation};
	__builtin_memcpy(port_key.port, &dport, 2);
	__builtin_memcpy(port_key.addr, &daddr, 4);
	struct et_any_key any_key = {.prefixlen = 8 + 32, .generation = generation};
	__builtin_memcpy(any_key.addr, &daddr, 4);
	struct et_rule *with_port = dport ? bpf_map_lookup_elem(&port_rules, &port_key) : NULL;
	struct et_rule *any_port = bpf_map_lookup_elem(&any_rules, &any_key);
	if (!with_port)
		return any_port;
	if (!any_port)
		return with_port;
	return with_port->rank >= any_port->rank ? with_port : any_port;
}

static __always_inline void count_rule(__u32 id, __u32 length, int dropped)
{
	__u32 slot = id % ET_STATS_SLOTS;
	struct et_rule_stats *stats = bpf_map_lookup_elem(&rule_stats, &slot);
	if (!stats)
		return;
	stats->packets += 1;
	stats->bytes += length;
	if (dropped)
		stats->drops += 1;
}

static __always_inline void emit(__u32 type, __u32 reason, struct et_tuple *tuple, struct et_flow *flow, __u64 now)
{
	struct et_event *event = bpf_ringbuf_reserve(&events, sizeof(*event), 0);
	if (!event) {
		__u32 zero = 0;
		__u64 *count = bpf_map_lookup_elem(&lost, &zero);
		if (count)
			*count += 1;
		return;
	}
	event->type = type;
	event->reason = reason;
	event->tuple = *tuple;
	event->rule_id = flow->rule_id;
	event->action = flow->action;
	__u64 *cookie = bpf_map_lookup_elem(&cookies, tuple);
	event->cookie = cookie ? *cookie : 0;
	event->start_ns = flow->start_ns;
	event->end_ns = type == ET_EVENT_FLOW_END ? now : 0;
	event->packets_in = flow->packets_in;
	event->packets_out = flow->packets_out;
	event->bytes_in = flow->bytes_in;
	event->bytes_out = flow->bytes_out;
	event->drops = flow->drops;
	/* Waking the reader costs an interrupt and a context switch per event; it is woken once a
	 * quarter of the ring buffer is waiting, and otherwise reads on its own schedule. */
	__u64 waiting = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	bpf_ringbuf_submit(event, waiting >= ET_EVENTS_WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

/* Ends the flow when both sides sent FIN or either reset it. */
static __always_inline void maybe_end(struct et_tuple *key, struct et_flow *flow, __u8 flags)
{
	__u32 reason = ET_END_NONE;
	if (flags & 0x04)
		reason = ET_END_RST;
	else if (flow->fin_in && flow->fin_out)
		reason = ET_END_FIN;
	if (reason == ET_END_NONE)
		return;
	emit(ET_EVENT_FLOW_END, reason, key, flow, bpf_ktime_get_ns());
	bpf_map_delete_elem(&flows, key);
}

/* Token bucket: true when the packet fits. */
static __always_inline int take_tokens(struct et_rule *rule, __u32 length)
{
	__u32 id = rule->id;
	struct et_bucket *bucket = bpf_map_lookup_elem(&buckets, &id);
	if (!bucket)
		return 1;
	int fits = 0;
	__u64 now = bpf_ktime_get_ns();
	bpf_spin_lock(&bucket->lock);
	__u64 elapsed = now - bucket->last_ns;
	/* Refill (capped: 1 s of elapsed time is more than any burst needs). */
	if (elapsed > 1000000000ULL)
		elapsed = 1000000000ULL;
	__u64 tokens = bucket->tokens + elapsed * rule->rate_bytes_per_second / 1000000000ULL;
	if (tokens > rule->burst_bytes)
		tokens = rule->burst_bytes;
	bucket->last_ns = now;
	if (tokens >= length) {
		tokens -= length;
		fits = 1;
	}
	bucket->tokens = tokens;
	bpf_spin_unlock(&bucket->lock);
	return fits;
}

static __always_inline int redirect(struct __sk_buff *skb, struct et_rule *rule)
{
	if (rule->backend_count == 0)
		return TC_ACT_OK;
	struct et_backend_key key = {.rule_id = rule->id};
	key.index = bpf_get_hash_recalc(skb) % rule->backend_count;
	struct et_backend *backend = bpf_map_lookup_elem(&backends, &key);
	if (!backend)
		return TC_ACT_OK;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return TC_ACT_OK;
	__builtin_memcpy(eth->h_dest, backend->pod_mac, 6);
	__builtin_memcpy(eth->h_source, backend->node_mac, 6);
	return bpf_redirect(backend->ifindex, 0);
}

static __always_inline int copy(struct __sk_buff *skb, struct et_rule *rule)
{
	for (__u32 index = 0; index < ET_MAX_BACKENDS; index++) {
		if (index >= rule->backend_count)
			break;
		struct et_backend_key key = {.rule_id = rule->id, .index = index};
		struct et_backend *backend = bpf_map_lookup_elem(&backends, &key);
		if (backend)
			bpf_clone_redirect(skb, backend->ifindex, 0);
	}
	return TC_ACT_OK;
}

SEC("tc")
int edgetrail_ingress(struct __sk_buff *skb)
{
	struct packet packet;
	if (parse(skb, &packet) < 0)
		return TC_ACT_OK;
	__u32 zero = 0;
	struct et_config *cfg = bpf_map_lookup_elem(&settings, &zero);
	__u32 generation = cfg ? cfg->generation & 1 : 0;
	__u32 version = cfg ? cfg->rules_version : 0;
	/* The clock is read only for flow starts and ends and the token bucket: it costs tens of
	 * ns on a virtual machine. */
	int tracked = packet.tuple.proto == IPPROTO_TCP || packet.tuple.proto == IPPROTO_UDP;

	/* A known flow carries the rule it matched under the current rule set. */
	struct et_flow *flow = tracked ? bpf_map_lookup_elem(&flows, &packet.tuple) : NULL;
	struct et_rule local = {};
	struct et_rule *rule = NULL;
	if (flow && flow->rules_version == version) {
		if (flow->has_rule) {
			local = flow->rule;
			rule = &local;
		}
	} else {
		struct et_rule *found = match(generation, packet.tuple.daddr, packet.tuple.dport);
		if (found) {
			local = *found;
			rule = &local;
		}
		if (flow) {
			flow->rule = local;
			flow->has_rule = rule != NULL;
			flow->rules_version = version;
		}
	}
	__u32 action = rule ? rule->action : ET_ACTION_PASS;

	/* Whether this packet goes on; decided before accounting so drops are counted. */
	int dropped = 0;
	if (action == ET_ACTION_DENY)
		dropped = 1;
	else if (action == ET_ACTION_RATELIMIT && rule)
		dropped = !take_tokens(rule, packet.length);
	if (rule)
		count_rule(rule->id, packet.length, dropped);

	/* Flow accounting for TCP and UDP: a TCP flow starts with its SYN. */
	if (tracked) {
		int syn_only = packet.tuple.proto == IPPROTO_TCP && (packet.tcp_flags & 0x12) == 0x02;
		if (!flow && (packet.tuple.proto == IPPROTO_UDP || syn_only)) {
			__u64 now = bpf_ktime_get_ns();
			struct et_flow fresh = {
				.rule = local, .rules_version = version, .has_rule = rule != NULL,
				.start_ns = now, .rule_id = rule ? rule->id : 0, .action = action};
			bpf_map_update_elem(&flows, &packet.tuple, &fresh, BPF_NOEXIST);
			/* Looked up whatever the update said: another CPU may have inserted it first. */
			flow = bpf_map_lookup_elem(&flows, &packet.tuple);
			if (flow) {
				emit(ET_EVENT_FLOW_START, ET_END_NONE, &packet.tuple, flow, now);
			} else {
				__u64 *untracked = bpf_map_lookup_elem(&flows_untracked, &zero);
				if (untracked)
					*untracked += 1;
			}
		}
		if (flow) {
			__sync_fetch_and_add(&flow->packets_in, 1);
			__sync_fetch_and_add(&flow->bytes_in, packet.length);
			if (dropped)
				__sync_fetch_and_add(&flow->drops, 1);
			if (packet.tcp_flags & 0x01)
				flow->fin_in = 1;
			maybe_end(&packet.tuple, flow, packet.tcp_flags);
		}
	}

	if (dropped)
		return TC_ACT_SHOT;
	if (!rule)
		return TC_ACT_OK;
	if (action == ET_ACTION_REDIRECT)
		return redirect(skb, rule);
	if (action == ET_ACTION_COPY)
		return copy(skb, rule);
	return TC_ACT_OK;
}

SEC("tc")
int edgetrail_egress(struct __sk_buff *skb)
{
	struct packet packet;
	if (parse(skb, &packet) < 0)
		return TC_ACT_OK;
	if (packet.tuple.proto != IPPROTO_TCP && packet.tuple.proto != IPPROTO_UDP)
		return TC_ACT_OK;
	/* A reply: the flow is keyed the way it entered, client -> server. */
	struct et_tuple key = {
		.saddr = packet.tuple.daddr,
		.daddr = packet.tuple.saddr,
		.sport = packet.tuple.dport,
		.dport = packet.tuple.sport,
		.proto = packet.tuple.proto,
	};
	struct et_flow *flow = bpf_map_lookup_elem(&flows, &key);
	if (!flow)
		return TC_ACT_OK;
	__sync_fetch_and_add(&flow->packets_out, 1);
	__sync_fetch_and_add(&flow->bytes_out, packet.length);
	if (packet.tcp_flags & 0x01)
		flow->fin_out = 1;
	maybe_end(&key, flow, packet.tcp_flags);
	return TC_ACT_OK;
}
