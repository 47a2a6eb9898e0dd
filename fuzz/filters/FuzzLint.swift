// libFuzzer entry point for the rule language: parse and check arbitrary bytes as a rule file,
// as `edgetrail filters lint` does. Built by scripts/fuzz-filters.sh with -sanitize=fuzzer,address;
// any trap, crash or memory error is a finding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLint(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    do {
        _ = try RuleFile.parse(text, fileName: "fuzz.rules")
    } catch {
        // Refusals must render like lint prints them, without crashing either.
        _ = DiagnosticRenderer.render(error.diagnostics, source: text)
    }
    return 0
}
