#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import EdgetrailCLI

/// The `edgetrail` executable: everything lives in EdgetrailCLI.
@main
enum Edgetrail {
    static func main() async {
        // Progress lines should appear as they happen, also when piped (make, CI logs).
        setvbuf(stdout, nil, _IOLBF, 0)
        await EdgetrailCommand.main()
    }
}
