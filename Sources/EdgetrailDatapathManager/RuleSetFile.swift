import EdgetrailCore
import EdgetrailDatapathAPI
import EdgetrailProto
import EdgetrailYAML
import Foundation
import Yams

/// A rule set as an operator writes it for `edgetrail datapath apply`:
///
/// ```yaml
/// rules:                       # the CNF shorthand, most specific match wins
///   - "10.201.0.2 80 : redirect => [proxy]"
///   - "* 22 : deny"
/// pods:                        # where the labels point
///   - name: proxy-0
///     labels: [proxy]
///     interface: et1-p0        # the node side of the pod's veth
///     ip: 10.250.0.2           # the manager asks ARP for its MAC…
///     mac: 02:00:00:00:00:01   # …unless it is given
/// ```
///
/// Every problem is reported as FILE:LINE:COLUMN; the rules' semantics (labels that resolve,
/// duplicates, rates) are checked by the manager, which refuses the set whole.
public enum RuleSetFile {
    public static func load(path: String) throws(DiagnosticsError) -> Edgetrail_V1_ApplyRulesRequest {
        try read(TextFile.read(path, what: "the rule set"), fileName: path)
    }

    public static func read(_ yaml: String, fileName: String) throws(DiagnosticsError) -> Edgetrail_V1_ApplyRulesRequest {
        var context = YAMLContext(fileName: fileName)
        var request = Edgetrail_V1_ApplyRulesRequest()
        guard let (_, root) = context.document(yaml, what: "a rule set with 'rules' and 'pods'") else {
            throw DiagnosticsError(context.diagnostics)
        }
        let fields = context.fields(of: root, allowed: ["rules", "pods"], what: "the rule set")
        for item in fields["rules"].map({ context.sequence($0, what: "rules") }) ?? [] {
            guard let text = item.scalar?.string else {
                context.report(
                    item.mapping != nil
                        ? "YAML read this rule as a mapping (because of ' : '); quote it: \"10.0.0.1 80 : redirect => [proxy]\""
                        : "expected a rule like \"10.0.0.1 80 : redirect => [proxy]\"",
                    at: item)
                continue
            }
            do {
                let rule = try DatapathRule.parse(shorthand: text)
                request.rules.append(DatapathMessages.message(rule, id: UInt32(request.rules.count + 1)))
            } catch {
                context.report(error.message, at: item, offset: error.offset)
            }
        }
        for item in fields["pods"].map({ context.sequence($0, what: "pods") }) ?? [] {
            guard let mapping = context.mapping(item, what: "a pod") else { continue }
            let podFields = context.fields(of: mapping, allowed: ["name", "labels", "interface", "ip", "mac"], what: "a pod")
            var pod = Edgetrail_V1_PodEndpoint()
            pod.name = context.requiredString(podFields["name"], field: "name", in: item, what: "the pod") ?? ""
            pod.nodeInterface =
                context.requiredString(podFields["interface"], field: "interface", in: item, what: "the pod") ?? ""
            for label in podFields["labels"].map({ context.sequence($0, what: "labels") }) ?? [] {
                if let value = context.string(label, what: "a label") { pod.labels.append(value) }
            }
            if podFields["labels"] == nil { context.report("the pod '\(pod.name)' needs 'labels' for rules to select it", at: item) }
            if let node = podFields["ip"], let text = context.string(node, what: "an IPv4 address") {
                if let address = IPPrefix.parseAddress(text), address.count == 4 {
                    pod.ip = Data(address)
                } else {
                    context.report("'\(text)' is not an IPv4 address", at: node)
                }
            }
            if let node = podFields["mac"], let text = context.string(node, what: "a MAC address") {
                let bytes = text.split(separator: ":").compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
                if bytes.count == 6, text.split(separator: ":").count == 6 {
                    pod.mac = Data(bytes)
                } else {
                    context.report("'\(text)' is not a MAC address like 02:00:00:00:00:01", at: node)
                }
            }
            if podFields["ip"] == nil, podFields["mac"] == nil {
                context.report("the pod '\(pod.name)' needs 'ip' (its MAC is then asked by ARP) or 'mac'", at: item)
            }
            request.pods.append(pod)
        }
        if fields["rules"] == nil { context.report("missing 'rules' (an empty list removes every rule)", at: nil) }
        guard context.diagnostics.isEmpty else { throw DiagnosticsError(context.diagnostics) }
        return request
    }
}
