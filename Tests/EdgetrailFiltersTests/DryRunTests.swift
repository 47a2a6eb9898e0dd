import EdgetrailCore
import EdgetrailFilters
import EdgetrailProto
import EdgetrailTelemetry
import Foundation
import Testing

private let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

@Suite("Filter dry runs over captures")
struct DryRunTests {
    @Test("a capture written batch by batch reads back the same batches")
    func captureRoundTrip() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cap-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var batches: [Edgetrail_V1_CookieBatch] = []
        do {
            let writer = try CaptureFile.Writer(path: path)
            for cookie in 1...5 as ClosedRange<UInt64> {
                var batch = Edgetrail_V1_CookieBatch()
                batch.cookie = cookie
                var record = Edgetrail_V1_Record()
                record.snapshot.key = "cookie:\(Cookie(cookie).hex):x"
                batch.records = [record]
                writer.write(batch)
                batches.append(batch)
            }
        }
        #expect(try CaptureFile.read(path: path) == batches)
    }

    @Test("a file that is not a capture is refused with why, instead of reading as zero cookies")
    func notACapture() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cap-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func refusal(_ contents: String) -> String {
            let path = directory.appendingPathComponent("input").path
            FileManager.default.createFile(atPath: path, contents: Data(contents.utf8))
            do {
                _ = try CaptureFile.read(path: path)
                return "read"
            } catch {
                return error.localizedDescription.replacingOccurrences(of: path, with: "FILE")
            }
        }
        #expect(refusal("drop span where span.service == \"x\"\n") == "FILE is not a capture (its first frame claims 1886351972 bytes but the file has 36); captures are written by 'edgetrail collector --capture FILE'")
        #expect(refusal("") == "FILE is not a capture (it is empty); captures are written by 'edgetrail collector --capture FILE'")
        #expect(refusal("ab").hasPrefix("FILE is not a capture (it has 2 bytes"))
    }

    @Test("the sample capture dry-runs with the example rules: counts, kept share and an explanation")
    func sampleCapture() throws {
        let batches = try CaptureFile.read(path: "\(root)/filters/testdata/sample.capture")
        #expect(batches.count >= 20)
        let rules = try RuleFile.load(path: "\(root)/filters/examples/edgesecurity.rules")
        let result = DryRun.run(files: [rules], batches: batches, explain: Cookie(0xCA0C))
        #expect(result.cookies == 20)
        #expect(result.records == batches.reduce(0) { $0 + $1.records.count })
        #expect(result.recordsKept < result.records && result.bytesKept < result.bytes)
        #expect(result.rules.count == 7)
        #expect(result.rules.first { $0.text.hasPrefix("redact snapshot.value") }?.matches == 20)
        #expect(result.explanation.contains { $0.contains("kept by") && $0.contains("keep cookie where") })
        let report = result.report()
        #expect(report.contains("cookies: \(result.cookiesKept) of 20 kept"))
        #expect(report.contains("to Kafka at the capture's rate:"))
        // No rules: everything is kept.
        let none = DryRun.run(files: [], batches: batches)
        #expect(none.recordsKept == none.records && none.cookiesKept == 20)
    }
}
