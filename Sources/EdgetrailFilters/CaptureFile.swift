import EdgetrailProto
import Foundation
import SwiftProtobuf

/// A capture of CookieBatches as the join released them: each batch as
/// `[length u32 little-endian][CookieBatch protobuf]`. Written by `edgetrail collector --capture`,
/// read by `edgetrail filters test --input`.
public enum CaptureFile {
    /// Appends batches to a capture file.
    public final class Writer: @unchecked Sendable {
        private let handle: FileHandle
        private let lock = NSLock()

        public init(path: String) throws {
            if !FileManager.default.fileExists(atPath: path) {
                FileManager.default.createFile(atPath: path, contents: nil)
            }
            guard let handle = FileHandle(forWritingAtPath: path) else {
                throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
            }
            handle.seekToEndOfFile()
            self.handle = handle
        }

        public func write(_ batch: Edgetrail_V1_CookieBatch) {
            guard let frame = try? batch.captureFrame() else { return }
            lock.withLock { handle.write(Data(frame)) }
        }

        deinit {
            handle.closeFile()
        }
    }

    /// Every batch in a capture; a torn last frame is ignored, a damaged one is an error.
    public static func read(path: String) throws -> [Edgetrail_V1_CookieBatch] {
        try read(data: try Data(contentsOf: URL(fileURLWithPath: path)), name: path)
    }

    /// The batches of a capture held in memory (`name` says where it came from, in errors).
    public static func read(data: Data, name path: String) throws -> [Edgetrail_V1_CookieBatch] {
        let bytes = [UInt8](data)
        if bytes.isEmpty { throw notACapture(path, "it is empty") }
        if bytes.count < 4 { throw notACapture(path, "it has \(bytes.count) bytes, fewer than one frame's length") }
        var batches: [Edgetrail_V1_CookieBatch] = []
        var offset = 0
        while offset + 4 <= bytes.count {
            let length = Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2]) << 16
                | Int(bytes[offset + 3]) << 24
            let end = offset + 4 + length
            guard end <= bytes.count else {
                // A torn last frame is what a collector stopped mid-write leaves; a first frame
                // longer than the file means the file is something else.
                if batches.isEmpty { throw notACapture(path, "its first frame claims \(length) bytes but the file has \(bytes.count)") }
                break
            }
            do {
                batches.append(try Edgetrail_V1_CookieBatch(serializedBytes: Array(bytes[(offset + 4)..<end])))
            } catch {
                throw CocoaError(
                    .fileReadCorruptFile,
                    userInfo: [NSLocalizedDescriptionKey: "\(path): batch \(batches.count + 1) at byte \(offset) is not a CookieBatch"])
            }
            offset = end
        }
        return batches
    }

    private static func notACapture(_ path: String, _ why: String) -> CocoaError {
        CocoaError(
            .fileReadCorruptFile,
            userInfo: [
                NSLocalizedDescriptionKey:
                    "\(path) is not a capture (\(why)); captures are written by 'edgetrail collector --capture FILE'"
            ])
    }
}
