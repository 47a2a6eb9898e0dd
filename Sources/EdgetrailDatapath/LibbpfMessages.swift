import CBPF
import Foundation
import Synchronization

/// libbpf's own messages. By default libbpf prints its warnings to stderr, including ones that
/// are expected (probing a tc hook that exists, a leftover filter being replaced); here they are
/// kept instead, and an operation that fails carries the ones it caused in its error.
enum LibbpfMessages {
    private static let recent = Mutex<[String]>([])

    /// Installs the handler once; every libbpf user in this module calls it first.
    static let installed: Void = {
        _ = libbpf_set_print { level, format, arguments in
            guard level == LIBBPF_WARN, let format, let arguments else { return 0 }
            var buffer = [CChar](repeating: 0, count: 512)
            let written = vsnprintf(&buffer, buffer.count, format, arguments)
            let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            if !line.isEmpty {
                LibbpfMessages.recent.withLock { lines in
                    lines.append(line)
                    if lines.count > 20 { lines.removeFirst(lines.count - 20) }
                }
            }
            return written
        }
    }()

    /// Forgets what was said so far (before an operation whose messages matter).
    static func reset() {
        _ = installed
        recent.withLock { $0 = [] }
    }

    /// What libbpf said since the last reset, and forgets it.
    static func take() -> [String] {
        recent.withLock { lines in
            defer { lines = [] }
            return lines
        }
    }
}
