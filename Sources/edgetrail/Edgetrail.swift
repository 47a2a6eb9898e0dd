import EdgetrailCLI

/// The `edgetrail` executable: everything lives in EdgetrailCLI.
@main
enum Edgetrail {
    static func main() async {
        await EdgetrailCommand.main()
    }
}
