import Foundation

/// A child process a benchmark starts and waits for: ready once it printed a line starting with
/// `waitFor` (that line is kept), optionally pinned to one core with one NIO event loop.
final class LineChild: Sendable {
    let process: Process
    let readyLine: String

    private init(process: Process, readyLine: String) {
        self.process = process
        self.readyLine = readyLine
    }

    static func start(_ executable: String, _ arguments: [String], waitFor prefix: String, core: Int?) throws -> LineChild {
        let process = Process()
        if let core, FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset") {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
            process.arguments = ["-c", "\(core)", executable] + arguments
            // One core: one event loop (NIO would otherwise start one per core of the machine,
            // and two loops sharing a core take turns in scheduler time slices).
            var environment = ProcessInfo.processInfo.environment
            environment["NIO_SINGLETON_GROUP_LOOP_COUNT"] = "1"
            process.environment = environment
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        try process.run()
        var text = ""
        let reader = output.fileHandleForReading
        let name = "\((executable as NSString).lastPathComponent) \(arguments.prefix(3).joined(separator: " "))"
        while true {
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) {
                return LineChild(process: process, readyLine: String(line))
            }
            let data = reader.availableData
            if data.isEmpty { throw BenchmarkError("\(name) exited before it printed '\(prefix)'") }
            text += String(decoding: data, as: UTF8.self)
        }
    }

    /// The value of `name=` on the ready line.
    func field(_ name: String) -> String? {
        readyLine.split(separator: " ").first { $0.hasPrefix("\(name)=") }.map { String($0.dropFirst(name.count + 1)) }
    }

    /// User and system CPU seconds the process has used so far.
    var cpuSeconds: Double { ProcessFigures.cpuSeconds(process.processIdentifier) }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }
}

struct BenchmarkError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
