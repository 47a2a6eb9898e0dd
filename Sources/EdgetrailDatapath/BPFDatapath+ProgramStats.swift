import CBPF
import EdgetrailCore
import Foundation

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
        (DatapathProgramStats(program: ingress), DatapathProgramStats(program: egress))
    }
}

extension DatapathProgramStats {
    /// What the kernel counted for `program` (zero when it cannot say).
    init(program: OpaquePointer) {
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        guard bpf_obj_get_info_by_fd(bpf_program__fd(program), &info, &length) == 0 else {
            self.init(runs: 0, nanoseconds: 0)
            return
        }
        self.init(runs: info.run_cnt, nanoseconds: info.run_time_ns)
    }
}

/// A benchmark-only program (`bpf/floors.bpf.c`, built beside the datapath's object and never
/// loaded by the Datapath Manager) attached at an interface's ingress, so its run-time
/// statistics can be read beside the datapath's.
public final class BPFProgramProbe {
    private let object: OpaquePointer
    private let program: OpaquePointer
    private var attached: TCAttachment?

    /// The floors' object next to the datapath's: `bpf/.output/floors.bpf.o`.
    public static func floorsObjectPath(besides datapathObject: String) -> String {
        (datapathObject as NSString).deletingLastPathComponent + "/floors.bpf.o"
    }

    public init(objectPath: String, program name: String) throws(DatapathError) {
        LibbpfMessages.reset()
        guard let object = bpf_object__open_file(objectPath, nil) else {
            throw .system("cannot open \(objectPath) (scripts/build-bpf.sh builds it)", errno)
        }
        let loaded = bpf_object__load(object)
        guard loaded == 0 else {
            bpf_object__close(object)
            throw .system("the kernel refused the programs in \(objectPath)", loaded)
        }
        guard let program = bpf_object__find_program_by_name(object, name) else {
            bpf_object__close(object)
            throw DatapathError("\(objectPath) has no program \(name); rebuild it (scripts/build-bpf.sh)")
        }
        self.object = object
        self.program = program
    }

    deinit {
        detach()
        bpf_object__close(object)
    }

    /// Attaches the program at `interface`'s ingress, adding a clsact qdisc when it has none.
    public func attach(interface: String) throws(DatapathError) {
        attached = try TCAttachment.attach([(BPF_TC_INGRESS, program)], interface: interface, what: "the probe")
    }

    /// Detaches the program, and the qdisc if this probe added it.
    public func detach() {
        attached?.detach()
        attached = nil
    }

    /// Runs and run time so far.
    public var stats: DatapathProgramStats { DatapathProgramStats(program: program) }
}
