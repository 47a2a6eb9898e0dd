import Foundation

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
        let base = self.base
        let reader = Task {
            do {
                let (status, body) = try await HTTPGet.open(url.absoluteString)
                guard status == 200 else {
                    throw CentralClientError(
                        status == 404 ? .notCentral : .answered(status: status),
                        "central at \(base) answered HTTP \(status) to /v1/live" + (status == 404 ? "; is it an older central?" : ""))
                }
                var events = EventStreamParser()
                for try await chunk in body {
                    for event in events.add(Data(chunk.readableBytesView)) where event.name == "sessions" {
                        if let sessions = try? JSONDecoder().decode(LiveSessions.self, from: Data(event.data.utf8)) {
                            continuation.yield(sessions)
                        }
                    }
                }
                continuation.finish()
            } catch let error as HTTPGetError where !error.cancelled {
                continuation.finish(
                    throwing: CentralClientError(.unreachable, "cannot reach central at \(base): \(error); is 'edgetrail central' running?"))
            } catch let error as CentralClientError {
                continuation.finish(throwing: error)
            } catch {
                continuation.finish()
            }
        }
        continuation.onTermination = { _ in reader.cancel() }
        return stream
    }
}

/// Splits `text/event-stream` bytes into events as they arrive (blank line between events;
/// `event:` names one, its `data:` lines are joined with newlines).
struct EventStreamParser {
    struct Event: Equatable {
        var name: String
        var data: String
    }

    private var buffer = Data()

    mutating func add(_ bytes: Data) -> [Event] {
        buffer.append(bytes)
        var events: [Event] = []
        while let end = buffer.range(of: Data("\n\n".utf8)) {
            let block = String(decoding: buffer[buffer.startIndex..<end.lowerBound], as: UTF8.self)
            buffer.removeSubrange(buffer.startIndex..<end.upperBound)
            var name = "message"
            var payload: [Substring] = []
            for line in block.split(separator: "\n") {
                if line.hasPrefix("event:") { name = line.dropFirst(6).trimmingCharacters(in: .whitespaces) }
                if line.hasPrefix("data:") { payload.append(line.dropFirst(5).drop { $0 == " " }) }
            }
            if !payload.isEmpty { events.append(Event(name: name, data: payload.joined(separator: "\n"))) }
        }
        return events
    }
}
