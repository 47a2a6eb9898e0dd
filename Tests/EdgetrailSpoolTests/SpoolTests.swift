import EdgetrailSpool
import Foundation
import Testing

private func temporaryDirectory() -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("spool-\(UUID().uuidString)").path
    return path
}

private func payload(_ index: Int, size: Int = 100) -> [UInt8] {
    (0..<size).map { UInt8(truncatingIfNeeded: $0 &+ index) }
}

@Suite("Spool")
struct SpoolTests {
    @Test("entries not acknowledged before a restart come back, in order, with their ids")
    func unacknowledgedEntriesSurviveReopen() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = SpoolConfiguration(directory: directory)
        configuration.segmentBytes = 1000  // several segments
        var ids: [UInt64] = []
        do {
            let spool = try Spool(configuration: configuration)
            for index in 0..<50 { ids.append(try spool.append(payload(index))) }
            spool.acknowledge(ids.enumerated().filter { $0.offset % 3 == 0 }.map(\.element))
            #expect(spool.pendingCount == 33)
        }
        let reopened = try Spool(configuration: configuration)
        let expected = ids.enumerated().filter { $0.offset % 3 != 0 }
        #expect(reopened.recovered.map(\.id) == expected.map(\.element))
        #expect(reopened.recovered.map(\.payload) == expected.map { payload($0.offset) })
        #expect(reopened.pendingCount == 33)
        // Ids keep growing after a reopen, so an old id is never reused.
        #expect(try reopened.append([1]) > ids.max()!)
    }

    @Test("a segment is deleted once everything in it is acknowledged, and the bytes it held are freed")
    func acknowledgedSegmentsAreDeleted() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = SpoolConfiguration(directory: directory)
        configuration.segmentBytes = 1000
        let spool = try Spool(configuration: configuration)
        var ids: [UInt64] = []
        for index in 0..<40 { ids.append(try spool.append(payload(index))) }
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".log") }
        #expect(files.count == 5)
        #expect(spool.usedBytes == 40 * 116)
        spool.acknowledge(ids.reversed())  // order does not matter
        #expect(spool.usedBytes == 0)
        #expect(spool.pendingCount == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
        #expect(try Spool(configuration: configuration).recovered.isEmpty)
    }

    @Test("an append past the capacity is refused with the sizes, and nothing is written")
    func fullSpoolRefuses() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = SpoolConfiguration(directory: directory)
        configuration.capacityBytes = 1000
        let spool = try Spool(configuration: configuration)
        var ids: [UInt64] = []
        for index in 0..<8 { ids.append(try spool.append(payload(index))) }
        #expect(throws: SpoolError.full(bytes: 116, usedBytes: 928, capacityBytes: 1000)) {
            _ = try spool.append(payload(9))
        }
        #expect(spool.pendingCount == 8)
        spool.acknowledge(ids)
        _ = try spool.append(payload(9))  // room again once acknowledged
        #expect(spool.pendingCount == 1)
    }

    @Test("a torn entry at the end of a segment (a crash mid-write) is cut off; whole entries survive")
    func tornTailIsRepaired() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configuration = SpoolConfiguration(directory: directory)
        do {
            let spool = try Spool(configuration: configuration)
            for index in 0..<3 { _ = try spool.append(payload(index)) }
        }
        let log = try #require(try FileManager.default.contentsOfDirectory(atPath: directory).first { $0.hasSuffix(".log") })
        let handle = try #require(FileHandle(forWritingAtPath: directory + "/" + log))
        handle.seekToEndOfFile()
        handle.write(Data([100, 0, 0, 0, 1, 2, 3]))  // a header promising 100 bytes, then nothing
        handle.closeFile()

        let reopened = try Spool(configuration: configuration)
        #expect(reopened.recovered.map(\.payload) == [payload(0), payload(1), payload(2)])
        #expect(reopened.repairedSegments.count == 1)
        _ = try reopened.append(payload(3))
        let again = try Spool(configuration: configuration)
        #expect(again.recovered.map(\.payload) == [payload(0), payload(1), payload(2), payload(3)])
        #expect(again.repairedSegments.isEmpty)
    }

    @Test("a damaged entry is not handed back as if it were whole")
    func corruptEntryIsDetected() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configuration = SpoolConfiguration(directory: directory)
        do {
            let spool = try Spool(configuration: configuration)
            for index in 0..<2 { _ = try spool.append(payload(index)) }
        }
        let log = try #require(try FileManager.default.contentsOfDirectory(atPath: directory).first { $0.hasSuffix(".log") })
        let path = directory + "/" + log
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[116 + 16 + 5] ^= 0xFF  // flip a payload byte of the second entry
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let reopened = try Spool(configuration: configuration)
        #expect(reopened.recovered.map(\.payload) == [payload(0)])
    }
}

@Suite("Spool reads back")
struct SpoolReadBackTests {
    @Test("unacknowledged entries are read back from disk in id order, acknowledged ones are not")
    func readsBackUnacknowledged() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("spool-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = SpoolConfiguration(directory: directory)
        configuration.segmentBytes = 500
        let spool = try Spool(configuration: configuration)
        var ids: [UInt64] = []
        for index in 0..<20 { ids.append(try spool.append([UInt8](repeating: UInt8(index), count: 50))) }
        spool.acknowledge(ids.filter { $0 % 2 == 0 })
        let entries = try spool.unacknowledgedEntries()
        #expect(entries.map(\.id) == ids.filter { $0 % 2 == 1 })
        #expect(entries.allSatisfy { $0.payload == [UInt8](repeating: UInt8($0.id - 1), count: 50) })
        // Picked by id across segments; acknowledged and unknown ids are left out.
        let picked = try spool.entries(ids: [ids[1], ids[2], ids[16], 9_999])  // ids[1] is acknowledged
        #expect(picked.map(\.id) == [ids[2], ids[16]])
    }
}
