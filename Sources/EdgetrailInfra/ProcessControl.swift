#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Starting, probing and stopping daemon processes without a service manager.
public enum ProcessControl {
    /// glibc's POSIX_SPAWN_SETSID: the child leads a new session, so it survives the
    /// command that started it and a Ctrl-C in that terminal.
    private static let spawnSetSID: Int16 = 0x80
    /// POSIX_SPAWN_SETSIGDEF and POSIX_SPAWN_SETSIGMASK: the Swift runtime's threads block and
    /// ignore signals a daemon must see (SIGTERM among them), and a spawned child inherits both.
    private static let spawnSetSignalDefaults: Int16 = 0x04
    private static let spawnSetSignalMask: Int16 = 0x08

    /// Starts `executable` detached, stdin from /dev/null, stdout and stderr appended to `logPath`.
    public static func spawnDetached(
        executable: String, arguments: [String], logPath: String, environment: [String: String] = [:],
        workingDirectory: String? = nil
    ) throws -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, spawnSetSID | spawnSetSignalDefaults | spawnSetSignalMask)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // A daemon must not keep the caller's other descriptors open: it would hold a pipe's
        // write end (a command's output someone reads to its end) for as long as it runs.
        closeDescriptors(from: 3, in: &actions)

        var merged = ProcessInfo.processInfo.environment
        for (key, value) in environment { merged[key] = value }
        var executable = executable
        var arguments = arguments
        if let workingDirectory {
            // posix_spawn has no portable chdir action; coreutils' env changes folder, then execs.
            arguments = ["--chdir=\(workingDirectory)", executable] + arguments
            executable = "/usr/bin/env"
        }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        var status = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        // A program written a moment ago (an install step, a test's stand-in) can still be open
        // for writing in a child another thread is forking, until that child execs: the kernel
        // refuses to run it meanwhile (ETXTBSY). That passes within milliseconds.
        var attempt = 0
        while status == ETXTBSY && attempt < 8 {
            attempt += 1
            usleep(UInt32(10_000 * attempt))
            status = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        }
        guard status == 0 else {
            throw InfraError("could not start \(executable): \(String(cString: strerror(status)))")
        }
        return pid
    }

    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later), which Swift's Glibc
    /// module does not declare.
    private static let addCloseFrom: CloseFrom? = dlsym(
        UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np"
    ).map { unsafeBitCast($0, to: CloseFrom.self) }

    private static func closeDescriptors(from lowest: Int32, in actions: inout posix_spawn_file_actions_t) {
        _ = addCloseFrom?(&actions, lowest)
    }

    /// Runs a command to completion, returning its exit status and combined output.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw InfraError("could not run \(executable): \(error.localizedDescription)")
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// True while `pid` runs and is not a zombie.
    public static func isAlive(_ pid: pid_t) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        // A zombie child of this process still answers kill(0); reap it.
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid { return false }
        if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        {
            let state = stat[stat.index(close, offsetBy: 2)...].prefix(1)
            if state == "Z" || state == "X" {
                // It exited after the first look; reap it if it is our child, so it is gone.
                _ = waitpid(pid, &status, WNOHANG)
                return false
            }
            return true
        }
        return true
    }

    /// The command line of a process, for telling our daemon from a reused pid.
    public static func commandLine(_ pid: pid_t) -> String? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        return String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
    }

    /// Sends `signal`, waits up to `timeout` seconds, then SIGKILLs; true when it is gone.
    @discardableResult
    public static func stop(_ pid: pid_t, signal: Int32 = SIGTERM, timeout: Double = 10) -> Bool {
        guard isAlive(pid) else { return true }
        kill(pid, signal)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if !isAlive(pid) { return true }
            usleep(50_000)
        }
        kill(pid, SIGKILL)
        for _ in 0..<40 {
            if !isAlive(pid) { return true }
            usleep(50_000)
        }
        return !isAlive(pid)
    }

    /// The last lines of a log, to explain why a daemon did not come up.
    public static func tail(_ path: String, lines: Int = 8) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return "(no log)" }
        return text.split(separator: "\n", omittingEmptySubsequences: true).suffix(lines)
            .map { "    " + $0 }.joined(separator: "\n")
    }

    /// Looks a program up on PATH and in the usual system folders.
    static func findExecutable(_ name: String, extraDirectories: [String] = []) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let directories =
            extraDirectories + path.split(separator: ":").map(String.init)
            + ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        for directory in directories where !directory.isEmpty {
            let candidate = directory + "/" + name
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
