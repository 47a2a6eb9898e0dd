#if canImport(Glibc)
import Glibc
#endif
import CZlib
import Foundation

/// Where a spool keeps its files and how much it may hold.
public struct SpoolConfiguration: Sendable, Hashable {
    /// The folder holding the segment files (created if missing; one spool per folder).
    public var directory: String
    /// The most bytes of unacknowledged entries on disk; an append beyond it is refused.
    public var capacityBytes: Int = 256 << 20
    /// A new segment file starts when the current one reaches this size.
    public var segmentBytes: Int = 8 << 20

    public init(directory: String) {
        self.directory = directory
    }
}

/// Why the spool could not take or keep an entry.
public enum SpoolError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Appending `bytes` would pass the capacity; the entry was refused, nothing was written.
    case full(bytes: Int, usedBytes: Int, capacityBytes: Int)
    case io(String)

    public var description: String {
        switch self {
        case .full(let bytes, let used, let capacity):
            "spool full: refused \(bytes) bytes (\(used) of \(capacity) bytes hold unacknowledged entries)"
        case .io(let message):
            "spool: \(message)"
        }
    }
}

/// One entry found unacknowledged when the spool was opened.
public struct SpoolEntry: Sendable, Hashable {
    public var id: UInt64
    public var payload: [UInt8]
}

/// A durable, bounded queue of opaque entries on disk: an entry is written before `append`
/// returns and stays until `acknowledge` names it, so a crash (even SIGKILL) loses nothing
/// appended; reopening the folder hands back every unacknowledged entry in `recovered`.
///
/// Files: `seg-<first id>.log` holds entries as `[length u32][crc32 u32][id u64][payload]`
/// (little-endian; the CRC covers id and payload), `seg-<first id>.acks` the acknowledged ids
/// (u64 each). A segment is deleted once every entry in it is acknowledged. A torn entry at the
/// end of a segment (a crash mid-write) is cut off on open.
public final class Spool: @unchecked Sendable {
    public let configuration: SpoolConfiguration
    /// Unacknowledged entries found on open, in id order; empty for a new spool.
    public let recovered: [SpoolEntry]
    /// Segments whose end held a torn or corrupt entry that was cut off on open.
    public let repairedSegments: [String]

    private let lock = NSLock()
    private var segments: [Segment] = []
    private var nextID: UInt64
    private var usedBytesStorage = 0
    private var pendingStorage = 0

    static let headerBytes = 16

    private final class Segment {
        let firstID: UInt64
        let logPath: String
        let acksPath: String
        var logFD: Int32 = -1
        var acksFD: Int32 = -1
        var bytes = 0
        var lastID: UInt64
        /// Ids written and not yet acknowledged.
        var unacknowledged = Set<UInt64>()
        var sealed = false

        init(firstID: UInt64, directory: String) {
            self.firstID = firstID
            self.lastID = firstID &- 1
            let name = String(format: "seg-%020llu", firstID)
            logPath = directory + "/" + name + ".log"
            acksPath = directory + "/" + name + ".acks"
        }

        func closeFiles() {
            if logFD >= 0 { close(logFD) }
            if acksFD >= 0 { close(acksFD) }
            logFD = -1
            acksFD = -1
        }
    }

    /// Opens (or creates) the spool in `configuration.directory` and recovers what it holds.
    public init(configuration: SpoolConfiguration) throws(SpoolError) {
        self.configuration = configuration
        do {
            try FileManager.default.createDirectory(
                atPath: configuration.directory, withIntermediateDirectories: true)
        } catch {
            throw .io("cannot create \(configuration.directory): \(error.localizedDescription)")
        }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: configuration.directory)
        } catch {
            throw .io("cannot list \(configuration.directory): \(error.localizedDescription)")
        }
        let firstIDs = names.compactMap { name -> UInt64? in
            guard name.hasPrefix("seg-"), name.hasSuffix(".log") else { return nil }
            return UInt64(name.dropFirst(4).dropLast(4))
        }.sorted()

        var recovered: [SpoolEntry] = []
        var repaired: [String] = []
        var maxID: UInt64 = 0
        for firstID in firstIDs {
            let segment = Segment(firstID: firstID, directory: configuration.directory)
            let acknowledged = Self.readAcks(segment.acksPath)
            let (entries, validBytes, torn) = try Self.readEntries(segment.logPath)
            if torn {
                truncate(segment.logPath, off_t(validBytes))
                repaired.append(segment.logPath)
            }
            segment.bytes = validBytes
            segment.sealed = true
            for entry in entries {
                maxID = max(maxID, entry.id)
                segment.lastID = max(segment.lastID, entry.id)
                if !acknowledged.contains(entry.id) {
                    segment.unacknowledged.insert(entry.id)
                    recovered.append(entry)
                }
            }
            if segment.unacknowledged.isEmpty {
                unlink(segment.logPath)
                unlink(segment.acksPath)
                continue
            }
            segments.append(segment)
            usedBytesStorage += segment.bytes
        }
        self.recovered = recovered
        self.repairedSegments = repaired
        self.pendingStorage = recovered.count
        self.nextID = maxID + 1
    }

    deinit {
        for segment in segments { segment.closeFiles() }
    }

    /// Bytes of segments that still hold unacknowledged entries.
    public var usedBytes: Int { lock.withLock { usedBytesStorage } }

    /// Entries appended (or recovered) and not yet acknowledged.
    public var pendingCount: Int { lock.withLock { pendingStorage } }

    /// Writes `payload` and returns its id (ids only grow, also across reopen).
    public func append(_ payload: [UInt8]) throws(SpoolError) -> UInt64 {
        lock.lock()
        defer { lock.unlock() }
        let entryBytes = Self.headerBytes + payload.count
        if usedBytesStorage + entryBytes > configuration.capacityBytes {
            throw .full(
                bytes: entryBytes, usedBytes: usedBytesStorage, capacityBytes: configuration.capacityBytes)
        }
        let segment = try activeSegment()
        let id = nextID
        // length, CRC-32 of (id, payload), id, payload — built in one buffer, the CRC filled in last.
        var record = [UInt8]()
        record.reserveCapacity(entryBytes)
        Self.appendLittleEndian(UInt32(payload.count), to: &record)
        Self.appendLittleEndian(UInt32(0), to: &record)
        Self.appendLittleEndian(id, to: &record)
        record += payload
        let crc = record.withUnsafeBufferPointer { CRC32.checksum(UnsafeBufferPointer(rebasing: $0[8...])) }
        withUnsafeBytes(of: crc.littleEndian) { record.replaceSubrange(4..<8, with: $0) }
        guard Self.writeAll(segment.logFD, record) else {
            // Cut off whatever part of the entry reached the file, so the segment stays readable.
            ftruncate(segment.logFD, off_t(segment.bytes))
            throw .io("cannot write to \(segment.logPath): \(String(cString: strerror(errno)))")
        }
        nextID += 1
        segment.bytes += entryBytes
        segment.lastID = id
        segment.unacknowledged.insert(id)
        usedBytesStorage += entryBytes
        pendingStorage += 1
        return id
    }

    /// Marks entries as delivered; segments whose entries are all acknowledged are deleted.
    /// Unknown or repeated ids are ignored.
    public func acknowledge(_ ids: some Sequence<UInt64>) {
        lock.lock()
        defer { lock.unlock() }
        var bySegment: [Int: [UInt64]] = [:]
        for id in ids {
            guard let index = segmentIndex(for: id), segments[index].unacknowledged.contains(id) else { continue }
            bySegment[index, default: []].append(id)
        }
        var emptied: [Int] = []
        for (index, ids) in bySegment {
            let segment = segments[index]
            for id in ids { segment.unacknowledged.remove(id) }
            pendingStorage -= ids.count
            if segment.unacknowledged.isEmpty {
                emptied.append(index)
                continue
            }
            if segment.acksFD < 0 {
                segment.acksFD = open(segment.acksPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            }
            var bytes = [UInt8]()
            bytes.reserveCapacity(ids.count * 8)
            for id in ids { Self.appendLittleEndian(id, to: &bytes) }
            // A lost ack only means a resend after a crash, never a loss.
            _ = Self.writeAll(segment.acksFD, bytes)
        }
        for index in emptied.sorted(by: >) {
            let segment = segments.remove(at: index)
            segment.closeFiles()
            unlink(segment.logPath)
            unlink(segment.acksPath)
            usedBytesStorage -= segment.bytes
        }
    }

    /// Every entry not yet acknowledged, read back from disk in id order (to send them again
    /// without keeping copies in memory).
    public func unacknowledgedEntries() throws(SpoolError) -> [SpoolEntry] {
        let live = lock.withLock { segments.map { ($0.logPath, $0.unacknowledged) } }
        var entries: [SpoolEntry] = []
        for (path, unacknowledged) in live where !unacknowledged.isEmpty {
            let (found, _, _) = try Self.readEntries(path)
            entries += found.filter { unacknowledged.contains($0.id) }
        }
        return entries.sorted { $0.id < $1.id }
    }

    /// The entries with these ids that are still unacknowledged, read back from disk in id order;
    /// each segment involved is read once.
    public func entries(ids: [UInt64]) throws(SpoolError) -> [SpoolEntry] {
        let live = lock.withLock { () -> [(String, Set<UInt64>)] in
            var wanted: [Int: Set<UInt64>] = [:]
            for id in ids {
                if let index = segmentIndex(for: id), segments[index].unacknowledged.contains(id) {
                    wanted[index, default: []].insert(id)
                }
            }
            return wanted.keys.sorted().map { (segments[$0].logPath, wanted[$0]!) }
        }
        var found: [SpoolEntry] = []
        for (path, wanted) in live {
            let (entries, _, _) = try Self.readEntries(path)
            found += entries.filter { wanted.contains($0.id) }
        }
        return found.sorted { $0.id < $1.id }
    }

    /// Forces written entries to stable storage (power loss); SIGKILL needs no sync.
    public func sync() {
        lock.withLock {
            for segment in segments where segment.logFD >= 0 { fsync(segment.logFD) }
        }
    }

    // MARK: Internals

    private func activeSegment() throws(SpoolError) -> Segment {
        if let last = segments.last, !last.sealed, last.bytes < configuration.segmentBytes {
            return last
        }
        segments.last?.sealed = true
        segments.last.map { segment in
            if segment.logFD >= 0 {
                close(segment.logFD)
                segment.logFD = -1
            }
        }
        let segment = Segment(firstID: nextID, directory: configuration.directory)
        segment.logFD = open(segment.logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard segment.logFD >= 0 else {
            throw .io("cannot create \(segment.logPath): \(String(cString: strerror(errno)))")
        }
        segments.append(segment)
        return segment
    }

    private func segmentIndex(for id: UInt64) -> Int? {
        var low = 0
        var high = segments.count - 1
        while low <= high {
            let middle = (low + high) / 2
            let segment = segments[middle]
            if id < segment.firstID {
                high = middle - 1
            } else if id > segment.lastID {
                low = middle + 1
            } else {
                return middle
            }
        }
        return nil
    }

    private static func readAcks(_ path: String) -> Set<UInt64> {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        var ids = Set<UInt64>()
        let bytes = [UInt8](data)
        var offset = 0
        while offset + 8 <= bytes.count {
            ids.insert(readLittleEndian(bytes, at: offset))
            offset += 8
        }
        return ids
    }

    /// The valid entries of a segment file, how many bytes they span, and whether more followed.
    private static func readEntries(_ path: String) throws(SpoolError) -> ([SpoolEntry], Int, Bool) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .io("cannot read \(path)")
        }
        let bytes = [UInt8](data)
        var entries: [SpoolEntry] = []
        var offset = 0
        while offset + headerBytes <= bytes.count {
            let length = Int(UInt32(truncatingIfNeeded: readLittleEndian(bytes, at: offset, count: 4)))
            let crc = UInt32(truncatingIfNeeded: readLittleEndian(bytes, at: offset + 4, count: 4))
            let end = offset + headerBytes + length
            guard end <= bytes.count else { break }
            let actual = bytes.withUnsafeBufferPointer {
                CRC32.checksum(UnsafeBufferPointer(rebasing: $0[(offset + 8)..<end]))
            }
            guard actual == crc else { break }
            let id = readLittleEndian(bytes, at: offset + 8)
            entries.append(SpoolEntry(id: id, payload: Array(bytes[(offset + headerBytes)..<end])))
            offset = end
        }
        return (entries, offset, offset != bytes.count)
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                write(fd, buffer.baseAddress! + written, bytes.count - written)
            }
            if result < 0 {
                if errno == EINTR { continue }
                return false
            }
            written += result
        }
        return true
    }

    static func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }

    static func readLittleEndian(_ bytes: [UInt8], at offset: Int, count: Int = 8) -> UInt64 {
        var value: UInt64 = 0
        for index in (0..<count).reversed() {
            value = value << 8 | UInt64(bytes[offset + index])
        }
        return value
    }
}

/// CRC-32 (IEEE 802.3, zlib's implementation), to tell a torn or damaged entry from a whole one.
enum CRC32 {
    static func checksum(_ buffer: UnsafeBufferPointer<UInt8>) -> UInt32 {
        UInt32(crc32(0, buffer.baseAddress, uInt(buffer.count)))
    }
}
