import NIOCore

/// Runs a task's jobs on one NIO event loop. A proxied connection's task prefers it, so the
/// awaits on its client and upstream channels (both on that loop) resume on the loop's own
/// thread instead of hopping to Swift's cooperative pool and back for every read and write.
final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    let loop: any EventLoop

    init(_ loop: any EventLoop) {
        self.loop = loop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
