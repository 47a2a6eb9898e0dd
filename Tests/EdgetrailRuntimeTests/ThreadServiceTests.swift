import EdgetrailRuntime
import Foundation
import Logging
import ServiceLifecycle
import Testing

private struct FailingService: Service {
    struct Failure: Error {}
    func run() async throws {
        try await Task.sleep(for: .milliseconds(100))
        throw Failure()
    }
}

@Suite("Blocking loops as services")
struct ThreadServiceTests {
    @Test("a blocking loop stops when another service of its group fails, so the group ends instead of hanging")
    func stopsOnCancellation() async throws {
        let stop = StopFlag()
        let loop = ThreadService(
            name: "loop", run: { while !stop.isSet { usleep(1000) } }, stop: { stop.set() })
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: loop), .init(service: FailingService())],
                logger: .init(label: "test")))
        let outcome = await withTaskGroup(of: String.self) { tasks in
            tasks.addTask {
                do {
                    try await group.run()
                    return "ended without the failure"
                } catch is FailingService.Failure {
                    return "ended with the failure"
                } catch {
                    return "ended with \(error)"
                }
            }
            tasks.addTask {
                try? await Task.sleep(for: .seconds(20))
                return "still running after 20 s"
            }
            let first = await tasks.next()!
            // Whatever happened, let the loop go so the test itself ends.
            stop.set()
            tasks.cancelAll()
            return first
        }
        #expect(outcome == "ended with the failure")
    }
}
