import EdgetrailNet
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A blocking HTTP/1.1 client over one TCP connection, reading responses exactly as sent
/// (Content-Length or chunked), so a test sees what a browser's connection would. (Sendable so a
/// test can hand it from one thread to the next; it is used by one at a time.)
final class HTTPTestClient: @unchecked Sendable {
    struct Response {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    private let fd: Int32
    private var buffer: [UInt8] = []

    init(host: String = "127.0.0.1", port: Int) throws {
        fd = SocketProbe.connect(to: .tcp(host: host, port: port))
        guard fd >= 0 else { throw HTTPTestError("cannot connect to \(host):\(port)") }
        SocketIO.setTimeout(fd, seconds: 30)
    }

    deinit { close(fd) }

    func get(_ path: String, headers: [String: String] = [:]) throws -> Response {
        try send(get: path, headers: headers)
        return try readResponse()
    }

    /// Sends a GET without reading its response (`readResponse` reads it later).
    func send(get path: String, headers: [String: String] = [:]) throws {
        var request = "GET \(path) HTTP/1.1\r\nHost: origin.test\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        guard SocketIO.writeAll(fd, Array(request.utf8)) else { throw HTTPTestError("send failed") }
    }

    /// POSTs `size` bytes, in pieces, with a Content-Length.
    func post(_ path: String, size: Int) throws -> Response {
        let head = "POST \(path) HTTP/1.1\r\nHost: origin.test\r\nContent-Length: \(size)\r\n\r\n"
        guard SocketIO.writeAll(fd, Array(head.utf8)) else { throw HTTPTestError("send failed") }
        let piece = [UInt8](repeating: UInt8(ascii: "u"), count: 64 * 1024)
        var left = size
        while left > 0 {
            let count = min(left, piece.count)
            guard SocketIO.writeAll(fd, piece[0..<count]) else { throw HTTPTestError("send failed") }
            left -= count
        }
        return try readResponse()
    }

    /// True when the server has closed the connection.
    var closedByServer: Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) == 0
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 256 * 1024)
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { throw HTTPTestError("the connection closed or timed out") }
        buffer += chunk[0..<count]
    }

    private func line() throws -> String {
        while true {
            if let end = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let text = String(decoding: buffer[0..<end], as: UTF8.self).trimmingCharacters(in: .init(charactersIn: "\r"))
                buffer.removeFirst(end + 1)
                return text
            }
            try fill()
        }
    }

    private func bytes(_ count: Int) throws -> [UInt8] {
        while buffer.count < count { try fill() }
        let result = Array(buffer[0..<count])
        buffer.removeFirst(count)
        return result
    }

    func readResponse() throws -> Response {
        let status = try line().split(separator: " ")
        guard status.count >= 2, let code = Int(status[1]) else { throw HTTPTestError("not an HTTP status line") }
        var headers: [String: String] = [:]
        while true {
            let header = try line()
            if header.isEmpty { break }
            let parts = header.split(separator: ":", maxSplits: 1)
            headers[parts[0].lowercased()] = parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
        }
        var body: [UInt8] = []
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            while true {
                guard let size = Int(try line().split(separator: ";")[0], radix: 16) else {
                    throw HTTPTestError("bad chunk size")
                }
                if size == 0 {
                    while try !line().isEmpty {}
                    break
                }
                body += try bytes(size)
                _ = try line()
            }
        } else if let length = headers["content-length"].flatMap(Int.init) {
            body = try bytes(length)
        }
        return Response(status: code, headers: headers, body: body)
    }
}

struct HTTPTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
