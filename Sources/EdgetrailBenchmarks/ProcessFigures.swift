import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// What a benchmark reads about a process from /proc: its CPU time and its peak resident set.
public enum ProcessFigures {
    /// User and system CPU seconds process `pid` has used so far.
    public static func cpuSeconds(_ pid: Int32) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let end = text.lastIndex(of: ")") else {
            return 0
        }
        // Fields after the command name: state is the 3rd; utime and stime are the 14th and 15th.
        let fields = text[text.index(after: end)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The peak resident set of process `pid` (VmHWM), in bytes; 0 when it cannot be read.
    public static func peakRSS(_ pid: Int32) -> Int {
        guard pid > 0, let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kilobytes * 1024
    }

    /// CPU seconds the calling thread has used.
    public static func threadCPUSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
