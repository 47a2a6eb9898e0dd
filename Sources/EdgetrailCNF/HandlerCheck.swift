import EdgetrailCore
import Foundation

/// Checks handler files the way the sidecar will load them, without running them: Python compiles
/// each one (a syntax error is an error at its FILE:LINE:COLUMN), and a file whose top level does
/// not define `handle(event, ctx)` gets a warning (the sidecar would give its events their default
/// verdict). Uses `python3` from PATH, or `EDGETRAIL_PYTHON`.
public enum HandlerCheck {
    public struct Finding: Sendable, Equatable, CustomStringConvertible {
        public var diagnostic: Diagnostic
        public var isWarning: Bool

        public var description: String {
            isWarning ? "\(diagnostic.location): warning: \(diagnostic.message)" : diagnostic.description
        }
    }

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var message: String
        public var description: String { message }
    }

    /// The handler files of `spec` (read from `path`), resolved against the spec's folder as the
    /// spec reader resolves them.
    public static func files(of spec: CNFSpec, at path: String) -> [String] {
        let directory = (path as NSString).deletingLastPathComponent
        var seen = Set<String>()
        return spec.handlers.compactMap { handler in
            let file =
                handler.file.hasPrefix("/") || directory.isEmpty ? handler.file : "\(directory)/\(handler.file)"
            return seen.insert(file).inserted ? file : nil
        }
    }

    /// Checks `files` (source given in `sources` is checked instead of the file on disk, for an
    /// editor checking as the operator types).
    public static func check(_ files: [String], sources: [String: String] = [:]) throws(Failure) -> [Finding] {
        guard !files.isEmpty else { return [] }
        let python = ProcessInfo.processInfo.environment["EDGETRAIL_PYTHON"] ?? "python3"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [python, "-c", checker]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        do {
            try process.run()
        } catch {
            throw Failure(message: "cannot run \(python) to check handler files: \(error)")
        }
        var request: [[String: String]] = []
        for file in files {
            var entry = ["file": file]
            if let source = sources[file] { entry["source"] = source }
            request.append(entry)
        }
        let payload = (try? JSONSerialization.data(withJSONObject: request)) ?? Data("[]".utf8)
        // Written from another thread: a large request must not block against a full output pipe.
        let writer = Thread {
            input.fileHandleForWriting.write(payload)
            try? input.fileHandleForWriting.close()
        }
        writer.start()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw Failure(
                message: "\(python) could not check the handler files (exit \(process.terminationStatus))"
                    + (text.isEmpty ? "" : ": \(text.split(separator: "\n").last ?? "")")
                    + "; set EDGETRAIL_PYTHON to a Python 3.11+ interpreter")
        }
        var findings: [Finding] = []
        for line in data.split(separator: UInt8(ascii: "\n")) {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                let file = object["file"] as? String, let message = object["message"] as? String
            else { continue }
            let location = SourceLocation(
                file: file, line: max(1, object["line"] as? Int ?? 1), column: max(1, object["column"] as? Int ?? 1))
            findings.append(Finding(diagnostic: Diagnostic(message, at: location), isWarning: object["warning"] as? Bool ?? false))
        }
        return findings.sorted { $0.diagnostic.location < $1.diagnostic.location }
    }

    /// Reads `[{"file": …, "source"?: …}]` on stdin, prints one JSON object per finding. Only the
    /// standard library: any Python 3 will do, the SDK need not be installed.
    static let checker = #"""
        import ast, json, sys

        def report(file, line, column, message, warning=False):
            print(json.dumps({"file": file, "line": line or 1, "column": column or 1, "message": message,
                              "warning": warning}))

        def handle_definition(tree):
            found = None
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "handle":
                    found = node
                elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "handle" for t in node.targets):
                    found = node
                elif isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == "handle" for a in node.names):
                    found = node
            return found

        for entry in json.load(sys.stdin):
            file = entry["file"]
            source = entry.get("source")
            if source is None:
                try:
                    with open(file, encoding="utf-8") as f:
                        source = f.read()
                except (OSError, UnicodeDecodeError) as error:
                    report(file, 1, 1, f"cannot read the handler file: {error}")
                    continue
            try:
                tree = ast.parse(source, filename=file)
                compile(tree, file, "exec")
            except SyntaxError as error:
                report(file, error.lineno, error.offset, f"{type(error).__name__}: {error.msg}")
                continue
            node = handle_definition(tree)
            if node is None:
                report(file, 1, 1, "defines no handle(event, ctx); the sidecar will give its events their default verdict",
                       warning=True)
            elif isinstance(node, ast.AsyncFunctionDef):
                report(file, node.lineno, node.col_offset + 1, "handle is 'async def'; handlers are plain functions "
                       "(the sidecar runs each on a thread of its own)", warning=True)
            elif isinstance(node, ast.FunctionDef):
                arguments = node.args
                positional = len(arguments.posonlyargs) + len(arguments.args)
                if arguments.vararg is None and positional != 2:
                    report(file, node.lineno, node.col_offset + 1,
                           f"handle takes {positional} argument{'s' if positional != 1 else ''}; the sidecar calls handle(event, ctx)",
                           warning=True)
        """#
}
