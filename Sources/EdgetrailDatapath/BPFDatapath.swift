import CBPF
import EdgetrailCore
import Foundation

/// Why the datapath could not do what was asked, and what to do about it.
public struct DatapathError: Error, CustomStringConvertible, Sendable {
    public var message: String
    /// What the kernel's verifier said, when it refused a program.
    public var verifierLog: String?

    public init(_ message: String, verifierLog: String? = nil) {
        self.message = message
        self.verifierLog = verifierLog
    }

    public var description: String {
        guard let verifierLog, !verifierLog.isEmpty else { return message }
        return message + "\nverifier log (last lines):\n" + verifierLog.split(separator: "\n").suffix(25).joined(separator: "\n")
    }

    static func system(_ what: String, _ code: Int32) -> DatapathError {
        let errno = code < 0 ? -code : code
        var message = "\(what): \(String(cString: strerror(errno)))"
        if errno == EPERM || errno == EACCES {
            message += " — loading eBPF programs needs root (CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON or CAP_SYS_ADMIN)"
        }
        let said = LibbpfMessages.take()
        if !said.isEmpty { message += "\nlibbpf said:\n  " + said.joined(separator: "\n  ") }
        return DatapathError(message)
    }
}

/// Zeroes every byte of a libbpf options struct, padding included: libbpf refuses options whose
/// bytes past the fields it knows are not zero, and Swift leaves padding as it finds it.
func zeroPadding<T>(_ value: inout T) {
    withUnsafeMutableBytes(of: &value) { $0.initializeMemory(as: UInt8.self, repeating: 0) }
}

/// The kernel's key for a flow (`et_tuple`, shared with `bpf/datapath.h`).
extension FlowTuple {
    var raw: et_tuple {
        var tuple = et_tuple()
        tuple.saddr = Self.word(source)
        tuple.daddr = Self.word(destination)
        tuple.sport = sourcePort.bigEndian
        tuple.dport = destinationPort.bigEndian
        tuple.proto = proto
        return tuple
    }

    init(_ raw: et_tuple) {
        self.init(
            source: Self.bytes(raw.saddr), destination: Self.bytes(raw.daddr), sourcePort: UInt16(bigEndian: raw.sport),
            destinationPort: UInt16(bigEndian: raw.dport), proto: raw.proto)
    }

    /// Four address bytes as the packet carries them, read into a 32-bit word as memory holds it.
    static func word(_ bytes: [UInt8]) -> UInt32 {
        var value: UInt32 = 0
        withUnsafeMutableBytes(of: &value) { buffer in
            for index in 0..<min(4, bytes.count) { buffer[index] = bytes[index] }
        }
        return value
    }

    static func bytes(_ word: UInt32) -> [UInt8] {
        withUnsafeBytes(of: word) { Array($0) }
    }
}

/// One flow event read from the ring buffer (or made by the idle sweep).
public struct DatapathFlowEvent: Sendable, Hashable {
    public enum Kind: Sendable, Hashable { case start, end }
    public enum EndReason: UInt32, Sendable, Hashable { case none = 0, fin = 1, rst = 2, idle = 3 }

    public var kind: Kind
    public var reason: EndReason
    public var tuple: FlowTuple
    /// The rule (its index in the applied rule set) that matched, if any.
    public var ruleIndex: Int?
    public var action: DatapathAction?
    public var cookie: UInt64
    /// Unix nanoseconds.
    public var startNs: UInt64
    public var endNs: UInt64
    public var packetsIn: UInt64
    public var packetsOut: UInt64
    public var bytesIn: UInt64
    public var bytesOut: UInt64
    public var drops: UInt64
}

/// Counters of one rule since it was applied.
public struct DatapathRuleStats: Sendable, Hashable {
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    public var drops: UInt64 = 0

    public init(packets: UInt64 = 0, bytes: UInt64 = 0, drops: UInt64 = 0) {
        self.packets = packets
        self.bytes = bytes
        self.drops = drops
    }
}

/// A pod a redirect or copy rule can send traffic to.
public struct DatapathPod: Sendable, Hashable {
    public var name: String
    public var labels: [String]
    /// The node's end of the pod's veth.
    public var nodeInterface: String
    /// The MAC address of the pod's end of the veth.
    public var mac: [UInt8]

    public init(name: String, labels: [String], nodeInterface: String, mac: [UInt8]) {
        self.name = name
        self.labels = labels
        self.nodeInterface = nodeInterface
        self.mac = mac
    }
}

/// The loaded datapath: the tc programs of `bpf/datapath.bpf.c` and their maps, attached to the
/// node's client-facing interface. Not thread-safe: one owner drives it (the Datapath Manager).
///
/// Rule sets are applied atomically: the new set is written beside the active one (the other
/// generation) and becomes active with one write of the generation number; if writing it fails,
/// what was written is removed and the active set is untouched.
public final class BPFDatapath {
    private let object: OpaquePointer
    private let ingress: OpaquePointer
    private let egress: OpaquePointer
    private var attached: (ifindex: Int32, createdHook: Bool)?
    private var ringBuffer: OpaquePointer?
    private var pendingEvents: [et_event] = []
    /// What the idle sweep last saw of each flow: its packet count and since when.
    private var activity: [FlowTuple: FlowActivity] = [:]
    private struct FlowActivity {
        var packets: UInt64
        var since: UInt64
    }
    /// The active generation (0 or 1) and what each generation's maps hold.
    private var generation: UInt8 = 0
    private var written: [[Written]] = [[], []]
    private var ruleIDs: [[UInt32]] = [[], []]
    private var nextRuleID: UInt32 = 1
    public private(set) var rules: [DatapathRule] = []
    public private(set) var version: UInt64 = 0
    /// Offset from the kernel's monotonic clock (the programs' timestamps) to Unix time.
    private let monotonicToUnix: Int64

    private enum Written {
        case portRule(et_port_key)
        case anyRule(et_any_key)
        case backend(et_backend_key)
        case bucket(UInt32)
    }

    /// Opens and loads the compiled programs. A kernel refusal carries the verifier's log.
    /// `ingressProgram` names the program attached to ingress (benchmarks attach
    /// `edgetrail_floor`, which does nothing, to measure the floor). `flowTableSize` replaces the
    /// programs' own size of the flow table (`ET_MAX_FLOWS`), e.g. to see what a full one does.
    public init(
        objectPath: String, ingressProgram: String = "edgetrail_ingress", flowTableSize: Int? = nil
    ) throws(DatapathError) {
        LibbpfMessages.reset()
        guard FileManager.default.fileExists(atPath: objectPath) else {
            throw DatapathError(
                "no datapath object at \(objectPath); build it with scripts/build-bpf.sh (make build does)")
        }
        let logSize = 1 << 20
        let log = UnsafeMutablePointer<CChar>.allocate(capacity: logSize)
        log.initialize(repeating: 0, count: logSize)
        defer { log.deallocate() }
        var options = bpf_object_open_opts()
        zeroPadding(&options)
        options.sz = MemoryLayout<bpf_object_open_opts>.size
        options.kernel_log_buf = log
        options.kernel_log_size = logSize
        guard let object = bpf_object__open_file(objectPath, &options) else {
            throw .system("cannot open \(objectPath)", errno)
        }
        if let flowTableSize {
            guard (1...Self.maximumFlowTableSize).contains(flowTableSize) else {
                bpf_object__close(object)
                throw DatapathError("a flow table of \(flowTableSize) flows: it holds 1 to \(Self.maximumFlowTableSize)")
            }
            guard let flows = bpf_object__find_map_by_name(object, "flows"),
                bpf_map__set_max_entries(flows, UInt32(flowTableSize)) == 0
            else {
                bpf_object__close(object)
                throw DatapathError("\(objectPath) has no flow table to size; rebuild it (scripts/build-bpf.sh)")
            }
        }
        let loaded = bpf_object__load(object)
        if loaded != 0 {
            let verifier = String(cString: log).trimmingCharacters(in: .whitespacesAndNewlines)
            bpf_object__close(object)
            guard verifier.isEmpty else {
                // The verifier read the programs and said no: the programs must change, not the
                // machine.
                throw DatapathError(
                    "the kernel's verifier refused the datapath programs in \(objectPath) "
                        + "(\(String(cString: strerror(loaded < 0 ? -loaded : loaded)))); fix bpf/ and rebuild "
                        + "(scripts/build-bpf.sh)",
                    verifierLog: verifier)
            }
            throw .system("the kernel refused the datapath programs", loaded)
        }
        guard let ingress = bpf_object__find_program_by_name(object, ingressProgram),
            let egress = bpf_object__find_program_by_name(object, "edgetrail_egress")
        else {
            bpf_object__close(object)
            throw DatapathError("\(objectPath) lacks the programs \(ingressProgram)/edgetrail_egress; rebuild it")
        }
        self.object = object
        self.ingress = ingress
        self.egress = egress
        var monotonic = timespec()
        var real = timespec()
        clock_gettime(CLOCK_MONOTONIC, &monotonic)
        clock_gettime(CLOCK_REALTIME, &real)
        monotonicToUnix = (Int64(real.tv_sec) - Int64(monotonic.tv_sec)) * 1_000_000_000
            + Int64(real.tv_nsec) - Int64(monotonic.tv_nsec)
    }

    deinit {
        detach()
        if let ringBuffer { ring_buffer__free(ringBuffer) }
        bpf_object__close(object)
    }

    /// The object file built next to the sources: `bpf/.output/datapath.bpf.o` under the first
    /// directory above `start` (e.g. the executable's) that has it, or `EDGETRAIL_BPF_OBJECT`.
    public static func defaultObjectPath(from start: String = CommandLine.arguments.first ?? ".") -> String {
        if let path = ProcessInfo.processInfo.environment["EDGETRAIL_BPF_OBJECT"] { return path }
        var directory = URL(fileURLWithPath: start).standardizedFileURL.deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("bpf/.output/datapath.bpf.o").path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            directory.deleteLastPathComponent()
        }
        return FileManager.default.currentDirectoryPath + "/bpf/.output/datapath.bpf.o"
    }

    // MARK: Attach and detach

    /// Attaches the programs to `interface` (ingress: client to node; egress: node to client),
    /// adding a clsact qdisc when it has none. Programs left by a crashed run are replaced.
    public func attach(interface: String) throws(DatapathError) {
        LibbpfMessages.reset()
        let ifindex = Int32(bitPattern: if_nametoindex(interface))
        guard ifindex > 0 else { throw DatapathError("no interface \(interface) in this network namespace") }
        var hook = bpf_tc_hook()
        Self.prepare(&hook, ifindex)
        let created = bpf_tc_hook_create(&hook)
        guard created == 0 || created == -EEXIST else { throw .system("cannot add a clsact qdisc to \(interface)", created) }
        // A clsact that already holds our filter was left by a datapath that did not shut down:
        // this one takes it over, and removes it on detach.
        var leftover = false
        if created != 0 {
            hook.attach_point = BPF_TC_INGRESS
            leftover = Self.withOurFilter { bpf_tc_query(&hook, &$0) } == 0
        }
        attached = (ifindex, created == 0 || leftover)
        for (point, program) in [(BPF_TC_INGRESS, ingress), (BPF_TC_EGRESS, egress)] {
            hook.attach_point = point
            let result = Self.withOurFilter { options in
                options.prog_fd = bpf_program__fd(program)
                options.flags = UInt32(BPF_TC_F_REPLACE.rawValue)
                return bpf_tc_attach(&hook, &options)
            }
            guard result == 0 else {
                detach()
                throw .system("cannot attach the datapath to \(interface)", result)
            }
        }
        try setSettings(generation: generation, ifindex: UInt32(ifindex))
    }

    /// Detaches the programs and removes the clsact qdisc if this datapath added it.
    public func detach() {
        guard let (ifindex, createdHook) = attached else { return }
        attached = nil
        var hook = bpf_tc_hook()
        Self.prepare(&hook, ifindex)
        for point in [BPF_TC_INGRESS, BPF_TC_EGRESS] {
            hook.attach_point = point
            _ = Self.withOurFilter { bpf_tc_detach(&hook, &$0) }
        }
        if createdHook {
            hook.attach_point = bpf_tc_attach_point(rawValue: BPF_TC_INGRESS.rawValue | BPF_TC_EGRESS.rawValue)
            _ = bpf_tc_hook_destroy(&hook)
        }
    }

    /// Makes `hook` the clsact hook (both directions) of an interface, in place (a copy would
    /// not keep its padding zero).
    private static func prepare(_ hook: inout bpf_tc_hook, _ ifindex: Int32) {
        zeroPadding(&hook)
        hook.sz = MemoryLayout<bpf_tc_hook>.size
        hook.ifindex = ifindex
        hook.attach_point = bpf_tc_attach_point(rawValue: BPF_TC_INGRESS.rawValue | BPF_TC_EGRESS.rawValue)
    }

    /// Runs a tc call with the options naming our filter (handle 1, priority 1), built in place
    /// so their padding stays zero.
    private static func withOurFilter(_ call: (inout bpf_tc_opts) -> Int32) -> Int32 {
        var options = bpf_tc_opts()
        zeroPadding(&options)
        options.sz = MemoryLayout<bpf_tc_opts>.size
        options.handle = 1
        options.priority = 1
        return call(&options)
    }

    // MARK: Maps

    private func mapFD(_ name: String) -> Int32 {
        guard let map = bpf_object__find_map_by_name(object, name) else { return -1 }
        return bpf_map__fd(map)
    }

    private func update<Key, Value>(_ map: String, _ key: Key, _ value: Value, flags: UInt64 = UInt64(BPF_ANY))
        throws(DatapathError)
    {
        var key = key
        var value = value
        let result = bpf_map_update_elem(mapFD(map), &key, &value, flags)
        guard result == 0 else { throw .system("cannot write the \(map) map", result) }
    }

    private func delete<Key>(_ map: String, _ key: Key) {
        var key = key
        _ = bpf_map_delete_elem(mapFD(map), &key)
    }

    /// Makes `generation` the active rules (and, with a new rule set, bumps the version that
    /// invalidates the rule each flow has cached).
    private func setSettings(generation: UInt8, ifindex: UInt32? = nil, newRules: Bool = false) throws(DatapathError) {
        var key: UInt32 = 0
        var settings = et_config()
        _ = bpf_map_lookup_elem(mapFD("settings"), &key, &settings)
        settings.generation = UInt32(generation)
        if newRules { settings.rules_version &+= 1 }
        if let ifindex { settings.client_ifindex = ifindex }
        try update("settings", key, settings)
    }

    /// The per-CPU counters slot of a rule id (see ET_STATS_SLOTS in datapath.h).
    static func statsSlot(_ id: UInt32) -> UInt32 { id % UInt32(2 * ET_MAX_RULES) }

    var possibleCPUs: Int { max(Int(libbpf_num_possible_cpus()), 1) }
}

// MARK: Rules

extension BPFDatapath {
    /// How many rules the loaded program's maps hold (`ET_MAX_RULES`).
    public static var ruleCapacity: Int { Int(ET_MAX_RULES) }

    /// Checks a rule set before anything is written: every problem, each naming its rule.
    public static func problems(in rules: [DatapathRule], pods: [DatapathPod]) -> [String] {
        var problems: [String] = []
        if rules.count > Int(ET_MAX_RULES) {
            problems.append("\(rules.count) rules; the datapath holds at most \(ET_MAX_RULES)")
        }
        var seen: [String: Int] = [:]
        for (index, rule) in rules.enumerated() {
            let name = "rule \(index + 1) (\(rule.shorthand))"
            if let destination = rule.destination, !destination.isIPv4 {
                problems.append("\(name): only IPv4 destinations are supported by the datapath")
            }
            let key = "\(rule.destination?.description ?? "*") \(rule.port.map(String.init) ?? "*")"
            if let first = seen[key] {
                problems.append("\(name): the same destination and port as rule \(first + 1); one of them could never match")
            } else {
                seen[key] = index
            }
            switch rule.action {
            case .redirect, .copy:
                let targets = pods.filter { pod in rule.labels.contains { pod.labels.contains($0) } }
                if rule.labels.isEmpty {
                    problems.append("\(name): \(rule.action.rawValue) needs the label of the pods to send to (=> [label])")
                } else if targets.isEmpty {
                    problems.append("\(name): no pod carries the label \(rule.labels.joined(separator: ", "))")
                } else if targets.count > Int(ET_MAX_BACKENDS) {
                    problems.append("\(name): \(targets.count) pods carry the label; at most \(ET_MAX_BACKENDS) per rule")
                }
                for pod in targets where if_nametoindex(pod.nodeInterface) == 0 {
                    problems.append("\(name): pod \(pod.name)'s interface \(pod.nodeInterface) does not exist on the node")
                }
                for pod in targets where pod.mac.count != 6 {
                    problems.append("\(name): pod \(pod.name) has no 6-byte MAC address")
                }
            case .ratelimit:
                if (rule.rateBytesPerSecond ?? 0) == 0 {
                    problems.append("\(name): ratelimit needs a rate above zero (e.g. 1MB/s)")
                }
            case .deny:
                break
            }
        }
        return problems
    }

    /// Makes `rules` the active rule set, atomically; a set with problems is refused whole.
    /// Returns the new version.
    @discardableResult
    public func apply(_ rules: [DatapathRule], pods: [DatapathPod]) throws(DatapathError) -> UInt64 {
        let problems = Self.problems(in: rules, pods: pods)
        guard problems.isEmpty else {
            throw DatapathError("rule set refused, the active rules stay:\n  " + problems.joined(separator: "\n  "))
        }
        let next: UInt8 = generation ^ 1
        clear(generation: next)
        do {
            for rule in rules {
                try write(rule, pods: pods, generation: next)
            }
        } catch {
            clear(generation: next)
            throw error
        }
        try setSettings(generation: next, newRules: true)
        let previous = generation
        generation = next
        clear(generation: previous)
        self.rules = rules
        version += 1
        return version
    }

    private func write(_ rule: DatapathRule, pods: [DatapathPod], generation: UInt8) throws(DatapathError) {
        let id = nextRuleID
        nextRuleID &+= 1
        ruleIDs[Int(generation)].append(id)
        // The slot may hold the counts of a rule 2,048 ids ago.
        var slot = Self.statsSlot(id)
        var zeros = [et_rule_stats](repeating: et_rule_stats(), count: possibleCPUs)
        let cleared = bpf_map_update_elem(mapFD("rule_stats"), &slot, &zeros, UInt64(BPF_ANY))
        guard cleared == 0 else { throw .system("cannot reset the rule_stats map", cleared) }
        let prefixLength = rule.destination?.length ?? 0
        let address = rule.destination?.address ?? [0, 0, 0, 0]
        let targets = pods.filter { pod in rule.labels.contains { pod.labels.contains($0) } }
        var value = et_rule()
        value.id = id
        value.action = Self.actionCode(rule.action)
        value.rank = UInt32(prefixLength * 2 + (rule.port == nil ? 0 : 1))
        value.backend_count = rule.action == .redirect || rule.action == .copy ? UInt32(targets.count) : 0
        value.rate_bytes_per_second = rule.rateBytesPerSecond ?? 0
        // A burst of a quarter second's worth (TCP needs room for its window), at least a full packet.
        value.burst_bytes = max((rule.rateBytesPerSecond ?? 0) / 4, 1514)
        if let port = rule.port {
            var key = et_port_key()
            key.prefixlen = UInt32(8 + 16 + prefixLength)
            key.generation = generation
            key.port = (UInt8(port >> 8), UInt8(port & 0xff))
            key.addr = (address[0], address[1], address[2], address[3])
            try update("port_rules", key, value)
            written[Int(generation)].append(.portRule(key))
        } else {
            var key = et_any_key()
            key.prefixlen = UInt32(8 + prefixLength)
            key.generation = generation
            key.addr = (address[0], address[1], address[2], address[3])
            try update("any_rules", key, value)
            written[Int(generation)].append(.anyRule(key))
        }
        if value.backend_count > 0 {
            for (index, pod) in targets.enumerated() {
                var backend = et_backend()
                backend.ifindex = if_nametoindex(pod.nodeInterface)
                backend.pod_mac = (pod.mac[0], pod.mac[1], pod.mac[2], pod.mac[3], pod.mac[4], pod.mac[5])
                let nodeMAC = Self.mac(of: pod.nodeInterface)
                backend.node_mac = (nodeMAC[0], nodeMAC[1], nodeMAC[2], nodeMAC[3], nodeMAC[4], nodeMAC[5])
                let key = et_backend_key(rule_id: id, index: UInt32(index))
                try update("backends", key, backend)
                written[Int(generation)].append(.backend(key))
            }
        }
        if rule.action == .ratelimit {
            var bucket = et_bucket()
            bucket.tokens = value.burst_bytes
            try update("buckets", id, bucket)
            written[Int(generation)].append(.bucket(id))
        }
    }

    private func clear(generation: UInt8) {
        for entry in written[Int(generation)] {
            switch entry {
            case .portRule(let key): delete("port_rules", key)
            case .anyRule(let key): delete("any_rules", key)
            case .backend(let key): delete("backends", key)
            case .bucket(let id): delete("buckets", id)
            }
        }
        written[Int(generation)] = []
        ruleIDs[Int(generation)] = []
    }

    static func actionCode(_ action: DatapathAction) -> UInt32 {
        switch action {
        case .redirect: UInt32(ET_ACTION_REDIRECT.rawValue)
        case .copy: UInt32(ET_ACTION_COPY.rawValue)
        case .deny: UInt32(ET_ACTION_DENY.rawValue)
        case .ratelimit: UInt32(ET_ACTION_RATELIMIT.rawValue)
        }
    }

    static func action(code: UInt32) -> DatapathAction? {
        switch code {
        case UInt32(ET_ACTION_REDIRECT.rawValue): .redirect
        case UInt32(ET_ACTION_COPY.rawValue): .copy
        case UInt32(ET_ACTION_DENY.rawValue): .deny
        case UInt32(ET_ACTION_RATELIMIT.rawValue): .ratelimit
        default: nil
        }
    }

    /// An interface's MAC address, from sysfs.
    static func mac(of interface: String) -> [UInt8] {
        let text = (try? String(contentsOfFile: "/sys/class/net/\(interface)/address", encoding: .utf8)) ?? ""
        let bytes = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":").compactMap { UInt8($0, radix: 16) }
        return bytes.count == 6 ? bytes : [0, 0, 0, 0, 0, 0]
    }

    // MARK: Stats, cookies, events

    /// Counters per rule of the active set, by the rule's index in it.
    public func stats() -> [DatapathRuleStats] {
        ruleIDs[Int(generation)].map { id in
            var key = Self.statsSlot(id)
            var values = [et_rule_stats](repeating: et_rule_stats(), count: possibleCPUs)
            var total = DatapathRuleStats()
            if bpf_map_lookup_elem(mapFD("rule_stats"), &key, &values) == 0 {
                for value in values {
                    total.packets += value.packets
                    total.bytes += value.bytes
                    total.drops += value.drops
                }
            }
            return total
        }
    }

    /// Flow events the ring buffer had no room for, since load.
    public func lostEvents() -> UInt64 {
        perCPUTotal("lost")
    }

    /// New flows the full flow table had no room for, since load: their packets went on under
    /// the rules, unaccounted and without events.
    public func untrackedFlows() -> UInt64 {
        perCPUTotal("flows_untracked")
    }

    /// The sum over CPUs of a one-counter per-CPU array.
    private func perCPUTotal(_ map: String) -> UInt64 {
        var key: UInt32 = 0
        var values = [UInt64](repeating: 0, count: possibleCPUs)
        guard bpf_map_lookup_elem(mapFD(map), &key, &values) == 0 else { return 0 }
        return values.reduce(0, +)
    }

    /// How many flows the flow table holds.
    public var flowTableSize: Int {
        guard let map = bpf_object__find_map_by_name(object, "flows") else { return 0 }
        return Int(bpf_map__max_entries(map))
    }

    /// The largest flow table the manager accepts (16 M flows, ~1.6 GB of kernel memory).
    public static let maximumFlowTableSize = 1 << 24

    /// Flows the datapath is tracking now.
    public func openFlows() -> Int {
        flowKeys().count
    }

    /// Binds a flow to a session cookie; its events carry it from now on.
    public func bind(_ tuple: FlowTuple, cookie: UInt64) throws(DatapathError) {
        try update("cookies", tuple.raw, cookie)
    }

    /// Whether the datapath is tracking a flow now.
    public func isTracking(_ tuple: FlowTuple) -> Bool {
        var key = tuple.raw
        var flow = et_flow()
        return bpf_map_lookup_elem(mapFD("flows"), &key, &flow) == 0
    }

    private func openRingBuffer() throws(DatapathError) -> OpaquePointer {
        if let ringBuffer { return ringBuffer }
        let context = Unmanaged.passUnretained(self).toOpaque()
        let opened = ring_buffer__new(mapFD("events"), { context, data, size in
            guard let context, let data, size >= MemoryLayout<et_event>.size else { return 0 }
            let datapath = Unmanaged<BPFDatapath>.fromOpaque(context).takeUnretainedValue()
            datapath.pendingEvents.append(data.loadUnaligned(as: et_event.self))
            return 0
        }, context, nil)
        guard let opened else { throw .system("cannot open the flow event ring buffer", errno) }
        ringBuffer = opened
        return opened
    }

    /// A descriptor that becomes readable when flow events are waiting: a caller can wait on it
    /// with poll(2) without holding the datapath, then `poll(timeoutMilliseconds: 0)`.
    public func eventDescriptor() throws(DatapathError) -> Int32 {
        ring_buffer__epoll_fd(try openRingBuffer())
    }

    /// Waits up to `timeoutMilliseconds` for a batch of flow events to be signalled, then returns
    /// every event waiting (signalled or not).
    public func poll(timeoutMilliseconds: Int32) throws(DatapathError) -> [DatapathFlowEvent] {
        let ringBuffer = try openRingBuffer()
        // The programs wake the reader only once a batch is waiting (see datapath.bpf.c), so
        // after the wait whatever is there is read, woken or not.
        if timeoutMilliseconds > 0 {
            let waited = ring_buffer__poll(ringBuffer, timeoutMilliseconds)
            guard waited >= 0 || waited == -EINTR else { throw .system("reading flow events failed", waited) }
        }
        let result = ring_buffer__consume(ringBuffer)
        guard result >= 0 || result == -EINTR else { throw .system("reading flow events failed", result) }
        let raw = pendingEvents
        pendingEvents.removeAll()
        return raw.map(event)
    }

    /// Ends flows with no packet for `idleNanoseconds`: returns their end events (reason idle)
    /// and forgets them. The programs keep no last-seen time (see datapath.h): a flow is idle
    /// when its packet counts have not moved since this sweep last saw them move, so the end
    /// time is accurate to the interval between sweeps (a flow of one packet: its start).
    public func sweepIdle(idleNanoseconds: UInt64) -> [DatapathFlowEvent] {
        var monotonic = timespec()
        clock_gettime(CLOCK_MONOTONIC, &monotonic)
        let now = UInt64(monotonic.tv_sec) * 1_000_000_000 + UInt64(monotonic.tv_nsec)
        var ended: [DatapathFlowEvent] = []
        var stillOpen: [FlowTuple: FlowActivity] = [:]
        for key in flowKeys() {
            var tuple = key
            var flow = et_flow()
            guard bpf_map_lookup_elem(mapFD("flows"), &tuple, &flow) == 0 else { continue }
            let flowTuple = FlowTuple(key)
            let packets = flow.packets_in &+ flow.packets_out
            var activity = activity[flowTuple] ?? FlowActivity(packets: packets, since: packets <= 1 ? flow.start_ns : now)
            if activity.packets != packets { activity = FlowActivity(packets: packets, since: now) }
            guard now > activity.since, now - activity.since > idleNanoseconds else {
                stillOpen[flowTuple] = activity
                continue
            }
            var cookie: UInt64 = 0
            _ = bpf_map_lookup_elem(mapFD("cookies"), &tuple, &cookie)
            var raw = et_event()
            raw.type = UInt32(ET_EVENT_FLOW_END.rawValue)
            raw.reason = UInt32(ET_END_IDLE.rawValue)
            raw.tuple = key
            raw.rule_id = flow.rule_id
            raw.action = flow.action
            raw.cookie = cookie
            raw.start_ns = flow.start_ns
            raw.end_ns = max(activity.since, flow.start_ns)
            raw.packets_in = flow.packets_in
            raw.packets_out = flow.packets_out
            raw.bytes_in = flow.bytes_in
            raw.bytes_out = flow.bytes_out
            raw.drops = flow.drops
            _ = bpf_map_delete_elem(mapFD("flows"), &tuple)
            ended.append(event(raw))
        }
        activity = stillOpen
        return ended
    }

    private func flowKeys() -> [et_tuple] {
        var keys: [et_tuple] = []
        var current = et_tuple()
        var next = et_tuple()
        var result = bpf_map_get_next_key(mapFD("flows"), nil, &next)
        while result == 0 {
            keys.append(next)
            current = next
            result = bpf_map_get_next_key(mapFD("flows"), &current, &next)
        }
        return keys
    }

    private func event(_ raw: et_event) -> DatapathFlowEvent {
        let index = ruleIDs[Int(generation)].firstIndex(of: raw.rule_id)
        func unix(_ monotonic: UInt64) -> UInt64 {
            monotonic == 0 ? 0 : UInt64(Int64(monotonic) + monotonicToUnix)
        }
        return DatapathFlowEvent(
            kind: raw.type == UInt32(ET_EVENT_FLOW_END.rawValue) ? .end : .start,
            reason: DatapathFlowEvent.EndReason(rawValue: raw.reason) ?? .none,
            tuple: FlowTuple(raw.tuple), ruleIndex: index, action: Self.action(code: raw.action),
            cookie: raw.cookie, startNs: unix(raw.start_ns), endNs: unix(raw.end_ns),
            packetsIn: raw.packets_in, packetsOut: raw.packets_out, bytesIn: raw.bytes_in, bytesOut: raw.bytes_out,
            drops: raw.drops)
    }
}

// MARK: Program run-time statistics

/// What the kernel measured of one program while statistics were on.
public struct DatapathProgramStats: Sendable, Hashable {
    public var runs: UInt64
    public var nanoseconds: UInt64
    public var nanosecondsPerRun: Double { runs == 0 ? 0 : Double(nanoseconds) / Double(runs) }
}

extension BPFDatapath {
    /// Turns on the kernel's per-program run time accounting until the returned descriptor is
    /// closed (it costs a little on every run, so it is off otherwise).
    public static func enableRunTimeStatistics() throws(DatapathError) -> Int32 {
        let fd = bpf_enable_stats(BPF_STATS_RUN_TIME)
        guard fd >= 0 else { throw .system("cannot turn on BPF run-time statistics", fd) }
        return fd
    }

    /// Runs the ingress program `repetitions` times on one packet in the kernel
    /// (BPF_PROG_TEST_RUN), timed once around the whole loop: the program's own cost without a
    /// clock read per run. Returns the mean nanoseconds per run and the program's verdict.
    public func testRunIngress(packet: [UInt8], repetitions: Int32) throws(DatapathError) -> (nanoseconds: UInt32, verdict: UInt32) {
        var result: (UInt32, UInt32) = (0, 0)
        let status = packet.withUnsafeBytes { bytes -> Int32 in
            var options = bpf_test_run_opts()
            zeroPadding(&options)
            options.sz = MemoryLayout<bpf_test_run_opts>.size
            options.data_in = bytes.baseAddress
            options.data_size_in = UInt32(bytes.count)
            options.repeat = repetitions
            let status = bpf_prog_test_run_opts(bpf_program__fd(ingress), &options)
            result = (options.duration, options.retval)
            return status
        }
        guard status == 0 else { throw .system("BPF_PROG_TEST_RUN of the ingress program failed", status) }
        return result
    }

    /// Runs and total run time of the ingress and egress programs so far.
    public func programStats() -> (ingress: DatapathProgramStats, egress: DatapathProgramStats) {
        func stats(_ program: OpaquePointer) -> DatapathProgramStats {
            var info = bpf_prog_info()
            var length = UInt32(MemoryLayout<bpf_prog_info>.size)
            guard bpf_obj_get_info_by_fd(bpf_program__fd(program), &info, &length) == 0 else {
                return DatapathProgramStats(runs: 0, nanoseconds: 0)
            }
            return DatapathProgramStats(runs: info.run_cnt, nanoseconds: info.run_time_ns)
        }
        return (stats(ingress), stats(egress))
    }
}
