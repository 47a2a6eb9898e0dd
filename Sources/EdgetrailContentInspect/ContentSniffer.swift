import Crypto
import EdgetrailCore
import Foundation

/// What a body really is, from its bytes rather than its declared type.
public struct ContentReport: Sendable, Equatable {
    /// The media type the bytes show, e.g. `application/pdf`.
    public var sniffedType: String
    /// `html`, `text`, `image`, `pdf`, `archive`, `executable`, `binary`, and `download` for
    /// anything a browser would save rather than show.
    public var categories: [String]
    /// The type may carry malware: executables, archives, documents, unknown binaries, downloads.
    public var needsScan: Bool
    public var size: Int
    public var sha256: String
}

/// Classifies bodies by their leading bytes.
public enum ContentSniffer {
    private static let signatures: [(prefix: [UInt8], type: String, category: String)] = [
        (Array("%PDF-".utf8), "application/pdf", "pdf"),
        ([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "image/png", "image"),
        ([0xFF, 0xD8, 0xFF], "image/jpeg", "image"),
        (Array("GIF87a".utf8), "image/gif", "image"),
        (Array("GIF89a".utf8), "image/gif", "image"),
        (Array("RIFF".utf8), "image/webp", "image"),
        ([0x50, 0x4B, 0x03, 0x04], "application/zip", "archive"),
        ([0x1F, 0x8B], "application/gzip", "archive"),
        ([0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C], "application/x-7z-compressed", "archive"),
        (Array("Rar!".utf8), "application/vnd.rar", "archive"),
        ([0x7F, 0x45, 0x4C, 0x46], "application/x-elf", "executable"),
        (Array("MZ".utf8), "application/x-msdownload", "executable"),
        ([0xCF, 0xFA, 0xED, 0xFE], "application/x-mach-binary", "executable"),
        (Array("#!".utf8), "text/x-script", "executable"),
    ]

    /// - Parameter declaredType: the `Content-Type` the sender gave, if any.
    public static func inspect(_ body: some Collection<UInt8>, declaredType: String = "") -> ContentReport {
        let head = Array(body.prefix(512))
        var sniffed = "application/octet-stream"
        var categories: [String] = []
        if let match = signatures.first(where: { head.starts(with: $0.prefix) }) {
            sniffed = match.type
            categories.append(match.category)
        } else if looksLikeHTML(head) {
            sniffed = "text/html"
            categories.append("html")
        } else if !head.isEmpty, isText(head) {
            sniffed = "text/plain"
            categories.append("text")
        } else if !head.isEmpty {
            categories.append("binary")
        }
        let declared = declaredType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        let shown = ["html", "text", "image"]
        let declaredShown = declared.hasPrefix("text/") || declared.hasPrefix("image/") || declared.isEmpty
        if !categories.contains(where: shown.contains) || !declaredShown { categories.append("download") }
        let needsScan = categories.contains { ["executable", "archive", "pdf", "binary", "download"].contains($0) }
        let digest = SHA256.hash(data: Data(body))
        return ContentReport(
            sniffedType: sniffed, categories: categories, needsScan: needsScan, size: body.count,
            sha256: Hex.string(Array(digest)))
    }

    private static func looksLikeHTML(_ head: [UInt8]) -> Bool {
        let text = String(decoding: head.prefix(256), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            .lowercased()
        return ["<!doctype html", "<html", "<head", "<body", "<!--"].contains { text.hasPrefix($0) }
    }

    /// UTF-8 (or ASCII) without control bytes other than tab, CR, LF, FF.
    private static func isText(_ head: [UInt8]) -> Bool {
        guard !head.contains(where: { $0 < 0x20 && ![0x09, 0x0A, 0x0C, 0x0D].contains($0) }) else { return false }
        // A multi-byte character cut at the end of the sample is fine.
        for cut in 0..<min(4, head.count) {
            if String(validating: head.dropLast(cut), as: UTF8.self) != nil { return true }
        }
        return false
    }
}
