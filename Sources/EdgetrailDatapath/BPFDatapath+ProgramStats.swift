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
