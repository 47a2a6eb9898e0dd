#if canImport(Glibc)
import Glibc
#endif

/// Nanoseconds since the Unix epoch, the time records, spans and events carry. Logic that
/// decides by time takes it as an argument; only the parts that do I/O read the clock.
@Sendable public func wallClockNanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_REALTIME, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}
