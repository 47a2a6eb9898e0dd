import EdgetrailProto
import GRPCCore
import GRPCNIOTransportHTTP2

/// Talks to a node agent on its Unix socket: `edgetrail cnf …` and the portal use it, without
/// linking the agent itself.
public enum NodeAgentClient {
    public typealias Client = Edgetrail_V1_NodeAgent.Client<HTTP2ClientTransport.Posix>

    /// The agent's socket for the node `node` under the run directory `run` (as `node up` makes it).
    public static func socket(node: String, runDirectory run: String) -> String { "\(run)/nodes/\(node)/agent.sock" }

    /// Connects, runs `body`, and closes the connection.
    public static func with<Result: Sendable>(socket: String, _ body: (Client) async throws -> Result) async throws -> Result {
        let transport = try HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: socket), transportSecurity: .plaintext)
        return try await withGRPCClient(transport: transport) { client in
            try await body(Edgetrail_V1_NodeAgent.Client(wrapping: client))
        }
    }

    /// Sends a deployment (`update`: a new version of a running CNF), passing each progress line
    /// to `progress` as it comes; returns the outcome (the stream's last message).
    public static func deploy(
        _ request: Edgetrail_V1_DeployRequest, update: Bool, client: Client,
        progress: @escaping @Sendable (String) async -> Void = { _ in }
    ) async throws -> Edgetrail_V1_DeployOutcome {
        let read = { @Sendable (response: StreamingClientResponse<Edgetrail_V1_DeployProgress>) async throws in
            var outcome = Edgetrail_V1_DeployOutcome()
            for try await message in response.messages {
                if message.hasOutcome {
                    outcome = message.outcome
                } else {
                    await progress(message.step)
                }
            }
            return outcome
        }
        return update ? try await client.update(request, onResponse: read) : try await client.deploy(request, onResponse: read)
    }

    /// What to tell a person when a call failed.
    public static func explain(_ error: any Error, socket: String, node: String) -> String {
        guard let rpc = error as? RPCError else { return "\(error)" }
        if rpc.code == .unavailable {
            return "cannot reach the node agent of \(node) at \(socket); is the node up? (sudo edgetrail node up --name \(node))"
        }
        return rpc.message
    }
}
