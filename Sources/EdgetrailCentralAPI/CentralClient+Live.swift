import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension CentralClient {
    /// Follows central's live feed (`GET /v1/live`): each element is one `sessions` event. Ends
    /// when central closes the stream; fails when central cannot be reached or refuses.
    /// Cancelling the consumer closes the connection.
    public func live(cnf: String?) -> AsyncThrowingStream<LiveSessions, any Error> {
        var components = URLComponents(string: base + "/v1/live")
        if let cnf, !cnf.isEmpty { components?.queryItems = [URLQueryItem(name: "cnf", value: cnf)] }
        let (stream, continuation) = AsyncThrowingStream<LiveSessions, any Error>.makeStream()
        guard let url = components?.url, url.host != nil else {
            continuation.finish(throwing: CentralClientError(.notCentral, "'\(base)' is not a URL like http://127.0.0.1:7070"))
            return stream
        }
        let reader = EventStreamReader(continuation: continuation, base: base)
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 60 * 60 * 24
        configuration.timeoutIntervalForResource = 60 * 60 * 24 * 7
        let session = URLSession(configuration: configuration, delegate: reader, delegateQueue: nil)
        let task = session.dataTask(with: url)
        continuation.onTermination = { _ in
            task.cancel()
            session.invalidateAndCancel()
        }
        task.resume()
        return stream
    }
}

/// Reads `text/event-stream` as it arrives and hands on each `sessions` event.
final class EventStreamReader: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    private let continuation: AsyncThrowingStream<LiveSessions, any Error>.Continuation
    private let base: String
    private var buffer = Data()
    private let lock = NSLock()

    init(continuation: AsyncThrowingStream<LiveSessions, any Error>.Continuation, base: String) {
        self.continuation = continuation
        self.base = base
    }

    func urlSession(
        _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
        completionHandler: @escaping (URLSession.ResponseDisposition) -> Void
    ) {
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200 else {
            continuation.finish(
                throwing: CentralClientError(
                    status == 404 ? .notCentral : .answered(status: status),
                    "central at \(base) answered HTTP \(status) to /v1/live" + (status == 404 ? "; is it an older central?" : "")))
            completionHandler(.cancel)
            return
        }
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        let events: [LiveSessions] = lock.withLock {
            buffer.append(data)
            var events: [LiveSessions] = []
            while let end = buffer.range(of: Data("\n\n".utf8)) {
                let block = String(decoding: buffer[buffer.startIndex..<end.lowerBound], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex..<end.upperBound)
                var name = "message"
                var payload: [Substring] = []
                for line in block.split(separator: "\n") {
                    if line.hasPrefix("event:") { name = line.dropFirst(6).trimmingCharacters(in: .whitespaces) }
                    if line.hasPrefix("data:") { payload.append(line.dropFirst(5).drop { $0 == " " }) }
                }
                guard name == "sessions", let event = try? JSONDecoder().decode(LiveSessions.self, from: Data(payload.joined(separator: "\n").utf8))
                else { continue }
                events.append(event)
            }
            return events
        }
        for event in events { continuation.yield(event) }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        if let error, (error as? URLError)?.code != .cancelled {
            continuation.finish(
                throwing: CentralClientError(.unreachable, "cannot reach central at \(base): \(error.localizedDescription); is 'edgetrail central' running?"))
        } else {
            continuation.finish()
        }
        session.finishTasksAndInvalidate()
    }
}
