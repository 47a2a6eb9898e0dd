import EdgetrailProto
import GRPCCore
import GRPCNIOTransportHTTP2

/// Talks to a Datapath Manager on its Unix socket: the command line, the collector's flow
/// source and the tests use it.
public enum DatapathManagerClient {
    public typealias Client = Edgetrail_V1_DatapathManager.Client<HTTP2ClientTransport.Posix>

    /// Connects, runs `body`, and closes the connection.
    public static func with<Result: Sendable>(
        socket: String, _ body: (Client) async throws -> Result
    ) async throws -> Result {
        let transport = try HTTP2ClientTransport.Posix(
            target: .unixDomainSocket(path: socket), transportSecurity: .plaintext)
        return try await withGRPCClient(transport: transport) { client in
            try await body(Edgetrail_V1_DatapathManager.Client(wrapping: client))
        }
    }

    /// What to tell a person when a call failed.
    public static func explain(_ error: any Error, socket: String) -> String {
        guard let rpc = error as? RPCError else { return "\(error)" }
        if rpc.code == .unavailable {
            return "cannot reach the Datapath Manager at \(socket) (\(rpc.message)); start it with "
                + "'edgetrail datapath serve --interface IF' (as root) or give --socket"
        }
        return rpc.message
    }
}
