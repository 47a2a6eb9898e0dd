#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import EdgetrailCLI
import NIOCore
import NIOPosix

/// The `edgetrail` executable: everything lives in EdgetrailCLI.
@main
enum Edgetrail {
    static func main() async {
        // Progress lines should appear as they happen, also when piped (make, CI logs).
        setvbuf(stdout, nil, _IOLBF, 0)
        // A μsrv's work hops between its gRPC/HTTP I/O and Swift tasks for every call; with the
        // tasks on the event loop threads those hops are not thread switches (a unary gRPC call
        // made ~14 of them, ~550 µs of CPU on a small VM). Its blocking work (Redis, clamd) runs
        // on NIO's thread pool, never on the tasks' threads. EDGETRAIL_TASKS_ON_EVENT_LOOPS=0/1
        // overrides the choice.
        let arguments = CommandLine.arguments.dropFirst()
        let choice = getenv("EDGETRAIL_TASKS_ON_EVENT_LOOPS").map { String(cString: $0) }
        if choice == "1" || (choice != "0" && Array(arguments.prefix(2)) == ["microservice", "run"]) {
            NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        }
        await EdgetrailCommand.main()
    }
}
