import EdgetrailCore
import EdgetrailFilters
import EdgetrailTelemetry
import Foundation

/// Notices when the collector's rule files change and compiles the new version. A file that no
/// longer lints is refused with its errors; the rules in force stay.
final class RuleFileWatcher: @unchecked Sendable {
    enum Change {
        case applied([RuleFile], version: String)
        case refused([Diagnostic])
    }

    let paths: [String]
    private var stamps: [String: (Date, Int)] = [:]
    private var lastCheck = Date.distantPast

    init(paths: [String]) {
        self.paths = paths
        stamps = Self.stamps(paths)
    }

    private static func stamps(_ paths: [String]) -> [String: (Date, Int)] {
        var result: [String: (Date, Int)] = [:]
        for path in paths {
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
            result[path] = (
                (attributes?[.modificationDate] as? Date) ?? .distantPast, (attributes?[.size] as? Int) ?? -1
            )
        }
        return result
    }

    /// At most once a second: the new rules if a file changed, or why they were refused.
    func poll() -> Change? {
        guard !paths.isEmpty, Date().timeIntervalSince(lastCheck) >= 1 else { return nil }
        lastCheck = Date()
        let now = Self.stamps(paths)
        let changed = paths.contains { path in
            let (oldDate, oldSize) = stamps[path] ?? (.distantPast, -1)
            let (newDate, newSize) = now[path] ?? (.distantPast, -1)
            return oldDate != newDate || oldSize != newSize
        }
        guard changed else { return nil }
        stamps = now
        do {
            let loaded = try RuleCompiler.loadFiles(paths: paths)
            return .applied(loaded.files, version: loaded.version)
        } catch {
            return .refused(error.diagnostics)
        }
    }
}
