import EdgetrailCore
import Foundation

extension CNFSpecReader {
    /// A reader for the spec at `path`: handler files resolve against its folder and must be
    /// readable regular files.
    public init(path: String) {
        let directory = (path as NSString).deletingLastPathComponent
        self.init(fileName: path, baseDirectory: directory) { handlerPath in
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: handlerPath, isDirectory: &isDirectory) else {
                return "no such file"
            }
            if isDirectory.boolValue { return "it is a folder, not a file" }
            guard FileManager.default.isReadableFile(atPath: handlerPath) else { return "permission denied" }
            return nil
        }
    }

    /// Reads and validates the spec file at `path`.
    public static func load(path: String) throws(DiagnosticsError) -> CNFSpec {
        let reader = CNFSpecReader(path: path)
        return try reader.read(TextFile.read(path, what: "the CNF spec"))
    }
}
