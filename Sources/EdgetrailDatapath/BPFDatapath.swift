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

/// The maps of the datapath object (`bpf/datapath.bpf.c`), looked up by these names once, when
/// the object is loaded: an object that lacks one is refused then, not at its first use.
enum DatapathMap: String, CaseIterable, Sendable {
    case settings
    case portRules = "port_rules"
    case anyRules = "any_rules"
    case backends
    case ruleStats = "rule_stats"
    case buckets, flows, cookies, events, lost
    case flowsUntracked = "flows_untracked"
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
    let object: OpaquePointer
    /// Every map of the object and its descriptor, found once at load.
    let maps: [DatapathMap: (map: OpaquePointer, fd: Int32)]
    let ingress: OpaquePointer
    let egress: OpaquePointer
    var attached: TCAttachment?
    var ringBuffer: OpaquePointer?
    var pendingEvents: [et_event] = []
    /// What the idle sweep last saw of each flow: its packet count and since when.
    var activity: [FlowTuple: FlowActivity] = [:]
    struct FlowActivity {
        var packets: UInt64
        var since: UInt64
    }
    /// The active generation (0 or 1) and what each generation's maps hold.
    var generation: UInt8 = 0
    var written: [[Written]] = [[], []]
    var ruleIDs: [[UInt32]] = [[], []]
    var nextRuleID: UInt32 = 1
    public internal(set) var rules: [DatapathRule] = []
    public internal(set) var version: UInt64 = 0
    /// Offset from the kernel's monotonic clock (the programs' timestamps) to Unix time.
    let monotonicToUnix: Int64

    enum Written {
        case portRule(et_port_key)
        case anyRule(et_any_key)
        case backend(et_backend_key)
        case bucket(UInt32)
    }

    /// Opens and loads the compiled programs. A kernel refusal carries the verifier's log.
    /// `flowTableSize` replaces the
    /// programs' own size of the flow table (`ET_MAX_FLOWS`), e.g. to see what a full one does.
    public init(
        objectPath: String, flowTableSize: Int? = nil
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
            guard let flows = bpf_object__find_map_by_name(object, DatapathMap.flows.rawValue),
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
        guard let ingress = bpf_object__find_program_by_name(object, "edgetrail_ingress"),
            let egress = bpf_object__find_program_by_name(object, "edgetrail_egress")
        else {
            bpf_object__close(object)
            throw DatapathError("\(objectPath) lacks the programs edgetrail_ingress/edgetrail_egress; rebuild it")
        }
        var maps: [DatapathMap: (map: OpaquePointer, fd: Int32)] = [:]
        for map in DatapathMap.allCases {
            guard let found = bpf_object__find_map_by_name(object, map.rawValue), bpf_map__fd(found) >= 0 else {
                bpf_object__close(object)
                throw DatapathError(
                    "\(objectPath) has no map \(map.rawValue); it is older or newer than this edgetrail: rebuild it (scripts/build-bpf.sh)")
            }
            maps[map] = (found, bpf_map__fd(found))
        }
        self.maps = maps
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
        let attachment = try TCAttachment.attach(
            [(BPF_TC_INGRESS, ingress), (BPF_TC_EGRESS, egress)], interface: interface, what: "the datapath")
        attached = attachment
        try setSettings(generation: generation, ifindex: UInt32(attachment.ifindex))
    }

    /// Detaches the programs and removes the clsact qdisc if this datapath added it.
    public func detach() {
        attached?.detach()
        attached = nil
    }

    // MARK: Maps

    /// A map's descriptor (every map was found when the object was loaded).
    func mapFD(_ map: DatapathMap) -> Int32 { maps[map]!.fd }

    func update<Key, Value>(_ map: DatapathMap, _ key: Key, _ value: Value, flags: UInt64 = UInt64(BPF_ANY))
        throws(DatapathError)
    {
        var key = key
        var value = value
        let result = bpf_map_update_elem(mapFD(map), &key, &value, flags)
        guard result == 0 else { throw .system("cannot write the \(map.rawValue) map", result) }
    }

    func delete<Key>(_ map: DatapathMap, _ key: Key) {
        var key = key
        _ = bpf_map_delete_elem(mapFD(map), &key)
    }

    /// Makes `generation` the active rules (and, with a new rule set, bumps the version that
    /// invalidates the rule each flow has cached).
    func setSettings(generation: UInt8, ifindex: UInt32? = nil, newRules: Bool = false) throws(DatapathError) {
        var key: UInt32 = 0
        var settings = et_config()
        _ = bpf_map_lookup_elem(mapFD(.settings), &key, &settings)
        settings.generation = UInt32(generation)
        if newRules { settings.rules_version &+= 1 }
        if let ifindex { settings.client_ifindex = ifindex }
        try update(.settings, key, settings)
    }

    /// The per-CPU counters slot of a rule id (see ET_STATS_SLOTS in datapath.h).
    static func statsSlot(_ id: UInt32) -> UInt32 { id % UInt32(2 * ET_MAX_RULES) }

    var possibleCPUs: Int { max(Int(libbpf_num_possible_cpus()), 1) }
}
