import EdgetrailCore
import EdgetrailYAML
import Yams

/// Reads a CNF spec from YAML and validates it, collecting every problem with its
/// `file:line:column` rather than stopping at the first.
///
/// ```yaml
/// name: edgesecurity
/// node: edge-1
/// microservices:
///   - { name: http-proxy, kind: http-proxy }
/// handlers:
///   - { microservice: http-proxy, event: request_received, file: handlers/on_request.py }
/// datapath:
///   - "10.201.0.2 80 : redirect => [http-proxy]"
/// ```
public struct CNFSpecReader: Sendable {
    /// Answers whether a handler file (as resolved against the spec's folder) can be read;
    /// `nil` means yes, otherwise the reason.
    public typealias FileCheck = @Sendable (_ path: String) -> String?

    /// The name reported in diagnostics (usually the path the operator gave).
    public var fileName: String
    /// The folder handler paths are relative to.
    public var baseDirectory: String
    public var checkFile: FileCheck

    public init(fileName: String, baseDirectory: String, checkFile: @escaping FileCheck) {
        self.fileName = fileName
        self.baseDirectory = baseDirectory
        self.checkFile = checkFile
    }

    /// Parses and validates; throws `DiagnosticsError` listing every problem found.
    public func read(_ yaml: String) throws(DiagnosticsError) -> CNFSpec {
        var context = YAMLContext(fileName: fileName)
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw DiagnosticsError([context.diagnostic(forYAMLError: error)])
        }
        guard let root, let mapping = context.mapping(root, what: "a CNF spec") else {
            if root == nil {
                context.report("the file is empty; a CNF spec needs name, node and microservices", at: nil)
            }
            throw DiagnosticsError(context.diagnostics)
        }
        let spec = readSpec(mapping, root: root, context: &context)
        guard context.diagnostics.isEmpty, let spec else { throw DiagnosticsError(context.diagnostics) }
        return spec
    }

    private func resolve(_ path: String) -> String {
        path.hasPrefix("/") ? path : (baseDirectory.isEmpty ? path : baseDirectory + "/" + path)
    }

    // MARK: Top level

    private func readSpec(_ mapping: Node.Mapping, root: Node, context: inout YAMLContext) -> CNFSpec? {
        let fields = context.fields(
            of: mapping, allowed: ["name", "node", "microservices", "handlers", "datapath", "settings"],
            what: "the CNF spec")
        let name = context.requiredName(fields["name"], field: "name", in: root, what: "the CNF")
        let node = context.requiredString(fields["node"], field: "node", in: root, what: "the CNF")
            .flatMap { value -> String? in
                value.isEmpty ? nil : value
            }

        var microservices: [(Microservice, Node)] = []
        if let list = fields["microservices"] {
            for item in context.sequence(list, what: "microservices") {
                if let microservice = readMicroservice(item, context: &context) {
                    microservices.append((microservice, item))
                }
            }
            if context.sequence(list, what: nil).isEmpty, list.sequence != nil {
                context.report("a CNF needs at least one μsrv under 'microservices'", at: list)
            }
        } else {
            context.report("missing required field 'microservices'", at: root)
        }
        var seenNames: [String: Node] = [:]
        for (microservice, node) in microservices {
            if let first = seenNames[microservice.name] {
                context.report(
                    "duplicate μsrv name '\(microservice.name)' (first defined at \(context.position(first)))",
                    at: node.mapping?["name"] ?? node)
            } else {
                seenNames[microservice.name] = node
            }
        }
        let byName = Dictionary(microservices.map { ($0.0.name, $0.0) }, uniquingKeysWith: { first, _ in first })

        var handlers: [Handler] = []
        if let list = fields["handlers"] {
            var seen: [String: Node] = [:]
            for item in context.sequence(list, what: "handlers") {
                guard let handler = readHandler(item, microservices: byName, context: &context) else { continue }
                let key = "\(handler.microservice)/\(handler.event)"
                if let first = seen[key] {
                    context.report(
                        "a second handler for \(handler.microservice)'s '\(handler.event)' (the first is at \(context.position(first))); bind one handler per event",
                        at: item)
                } else {
                    seen[key] = item
                }
                handlers.append(handler)
            }
        }

        var rules: [DatapathRule] = []
        if let list = fields["datapath"] {
            let labels = Set(microservices.flatMap(\.0.labels))
            var seen: [String: Node] = [:]
            for (position, item) in context.sequence(list, what: "datapath").enumerated() {
                guard position < DatapathRule.maximumCount else {
                    let count = list.sequence?.count ?? position
                    context.report(
                        "\(count) datapath rules; a node's datapath holds at most \(DatapathRule.maximumCount) "
                            + "(this is rule \(position + 1)); merge rules with networks like 10.0.0.0/8 or '*'",
                        at: item)
                    break
                }
                guard let (rule, valid) = readRule(item, knownLabels: labels, context: &context) else { continue }
                let key = "\(rule.destination?.description ?? "*") \(rule.port.map(String.init) ?? "*")"
                if let first = seen[key] {
                    context.report(
                        "a second rule for \(key) (the first is at \(context.position(first))); one rule per address and port",
                        at: item)
                } else {
                    seen[key] = item
                }
                if valid { rules.append(rule) }
            }
        }

        var settings: [String: String] = [:]
        if let node = fields["settings"], let mapping = context.mapping(node, what: "settings") {
            for (key, value) in mapping {
                guard let name = context.string(key, what: "a setting's name") else { continue }
                if name.isEmpty || name.contains(where: { $0.isWhitespace || $0 == "=" }) {
                    context.report("'\(name)' is not a setting name; use letters, digits, '.', '_' or '-'", at: key)
                    continue
                }
                guard let text = context.string(value, what: "the value of setting '\(name)' (text, a number or true/false)")
                else { continue }
                settings[name] = text
            }
        }

        guard let name, let node else { return nil }
        return CNFSpec(
            name: name, node: node, microservices: microservices.map(\.0), handlers: handlers, datapath: rules,
            settings: settings)
    }

    // MARK: Microservices

    private func readMicroservice(_ item: Node, context: inout YAMLContext) -> Microservice? {
        guard let mapping = context.mapping(item, what: "a μsrv") else { return nil }
        let fields = context.fields(of: mapping, allowed: ["name", "kind", "labels", "events", "config"], what: "a μsrv")
        let name = context.requiredName(fields["name"], field: "name", in: item, what: "a μsrv")
        var kind: MicroserviceKind?
        if let kindText = context.requiredString(fields["kind"], field: "kind", in: item, what: "a μsrv") {
            kind = MicroserviceKind(rawValue: kindText)
            if kind == nil {
                let known = MicroserviceKind.allCases.map(\.rawValue).joined(separator: ", ")
                context.report("unknown μsrv kind '\(kindText)' (expected one of: \(known))", at: fields["kind"])
            }
        }
        var labels: [String] = []
        if let labelList = fields["labels"] {
            for labelNode in context.sequence(labelList, what: "labels") {
                if let label = context.name(labelNode, what: "a label") { labels.append(label) }
            }
        }
        var events: [String] = []
        if let eventList = fields["events"] {
            for eventNode in context.sequence(eventList, what: "events") {
                guard let event = context.string(eventNode, what: "an event name") else { continue }
                if let kind, !kind.events.contains(event) {
                    context.report(
                        "a \(kind.rawValue) does not publish '\(event)' (it publishes: \(kind.events.joined(separator: ", ")))",
                        at: eventNode)
                    continue
                }
                events.append(event)
            }
        }
        var config: String?
        if let node = fields["config"], let file = context.string(node, what: "a settings file") {
            if file.isEmpty {
                context.report("the μsrv's 'config' is empty; name its settings file (YAML)", at: node)
            } else if let problem = checkFile(resolve(file)) {
                context.report("cannot read settings file '\(file)': \(problem)", at: node)
            } else {
                config = file
            }
        }
        guard let name, let kind else { return nil }
        var microservice = Microservice(
            name: name, kind: kind, labels: fields["labels"] == nil ? [name] : labels,
            events: fields["events"] == nil ? kind.events : events)
        microservice.config = config
        return microservice
    }

    // MARK: Handlers

    private func readHandler(
        _ item: Node, microservices: [String: Microservice], context: inout YAMLContext
    ) -> Handler? {
        guard let mapping = context.mapping(item, what: "a handler") else { return nil }
        let fields = context.fields(
            of: mapping, allowed: ["microservice", "event", "file", "timeout"], what: "a handler")
        let owner = context.requiredString(fields["microservice"], field: "microservice", in: item, what: "a handler")
        let event = context.requiredString(fields["event"], field: "event", in: item, what: "a handler")
        let file = context.requiredString(fields["file"], field: "file", in: item, what: "a handler")
        var timeout = 1000
        if let timeoutNode = fields["timeout"], let text = context.string(timeoutNode, what: "a timeout") {
            if let milliseconds = parseMilliseconds(text) {
                timeout = milliseconds
            } else {
                context.report("'\(text)' is not a timeout; write it like 500ms or 2s", at: timeoutNode)
            }
        }
        if let owner {
            if let microservice = microservices[owner] {
                if let event, !microservice.events.contains(event) {
                    let published = microservice.events.isEmpty ? "none" : microservice.events.joined(separator: ", ")
                    context.report(
                        "μsrv '\(owner)' does not publish '\(event)' (it publishes: \(published))",
                        at: fields["event"])
                }
            } else {
                let known = microservices.keys.sorted().joined(separator: ", ")
                context.report(
                    "no μsrv named '\(owner)' in this CNF (its μsrvs: \(known.isEmpty ? "none" : known))",
                    at: fields["microservice"])
            }
        }
        if let file {
            if file.isEmpty {
                context.report("the handler's 'file' is empty; name a Python file", at: fields["file"])
            } else if let problem = checkFile(resolve(file)) {
                context.report("cannot read handler file '\(file)': \(problem)", at: fields["file"])
            }
        }
        guard let owner, let event, let file else { return nil }
        return Handler(microservice: owner, event: event, file: file, timeoutMilliseconds: timeout)
    }

    private func parseMilliseconds(_ text: String) -> Int? {
        if text.hasSuffix("ms"), let value = Int(text.dropLast(2)), value > 0 { return value }
        if text.hasSuffix("s"), let value = Double(text.dropLast()), value > 0 { return Int(value * 1000) }
        return nil
    }

    // MARK: Datapath rules

    /// The rule as written (nil when unreadable) and whether it passed the semantic checks.
    private func readRule(
        _ item: Node, knownLabels: Set<String>, context: inout YAMLContext
    ) -> (DatapathRule, Bool)? {
        let rule: DatapathRule
        // Where each label is written: its own node (long form) or an offset in the string.
        var labelPlaces: [(node: Node, offset: Int)] = []
        if let scalar = item.scalar {
            do {
                rule = try DatapathRule.parse(shorthand: scalar.string)
            } catch {
                context.report(error.message, at: item, offset: error.offset)
                return nil
            }
            let characters = Array(scalar.string)
            let arrow = Array("=>")
            let labelsStart =
                (0..<max(characters.count - 1, 0)).first { Array(characters[$0..<$0 + 2]) == arrow } ?? 0
            labelPlaces = rule.labels.map { label in
                let target = Array(label)
                let offset = (labelsStart..<characters.count).first { start in
                    start + target.count <= characters.count
                        && Array(characters[start..<start + target.count]) == target
                }
                return (item, offset ?? 0)
            }
        } else if let mapping = context.mapping(item, what: "a datapath rule (shorthand string or mapping)") {
            guard let (parsed, nodes) = readLongRule(mapping, item: item, context: &context) else { return nil }
            rule = parsed
            labelPlaces = nodes.map { ($0, 0) }
        } else {
            return nil
        }
        var valid = true
        for (label, place) in zip(rule.labels, labelPlaces) where !knownLabels.contains(label) {
            let known = knownLabels.sorted().joined(separator: ", ")
            context.report(
                "no μsrv carries the label '\(label)' (labels in this CNF: \(known.isEmpty ? "none" : known))",
                at: place.node, offset: place.offset)
            valid = false
        }
        switch rule.action {
        case .redirect, .copy:
            if rule.labels.isEmpty {
                context.report(
                    "a \(rule.action.rawValue) rule needs the label of the pod to send traffic to, e.g. '=> [http-proxy]'",
                    at: item)
                valid = false
            }
        case .ratelimit:
            if rule.rateBytesPerSecond == nil {
                context.report("a ratelimit rule needs a rate, e.g. 'ratelimit 1MB/s' or 'rate: 1MB/s'", at: item)
                valid = false
            }
        case .deny:
            break
        }
        if rule.action != .ratelimit, rule.rateBytesPerSecond != nil {
            context.report("a rate applies to ratelimit rules only, not \(rule.action.rawValue)", at: item)
            valid = false
        }
        return (rule, valid)
    }

    private func readLongRule(
        _ mapping: Node.Mapping, item: Node, context: inout YAMLContext
    ) -> (DatapathRule, [Node])? {
        let fields = context.fields(
            of: mapping, allowed: ["ip", "port", "action", "labels", "rate"], what: "a datapath rule")
        var ok = true
        var destination: IPPrefix?
        if let text = context.requiredString(fields["ip"], field: "ip", in: item, what: "a datapath rule") {
            do { destination = try DatapathRule.parseDestination(text) } catch {
                context.report(error.message, at: fields["ip"])
                ok = false
            }
        } else {
            ok = false
        }
        var port: UInt16?
        if let text = context.requiredString(fields["port"], field: "port", in: item, what: "a datapath rule") {
            do { port = try DatapathRule.parsePort(text) } catch {
                context.report(error.message, at: fields["port"])
                ok = false
            }
        } else {
            ok = false
        }
        var action: DatapathAction?
        if let text = context.requiredString(fields["action"], field: "action", in: item, what: "a datapath rule") {
            do { action = try DatapathRule.parseAction(text) } catch {
                context.report(error.message, at: fields["action"])
            }
        }
        var labels: [String] = []
        var labelNodes: [Node] = []
        if let list = fields["labels"] {
            for node in context.sequence(list, what: "labels") {
                if let label = context.name(node, what: "a label") {
                    labels.append(label)
                    labelNodes.append(node)
                }
            }
        }
        var rate: UInt64?
        if let rateNode = fields["rate"], let text = context.string(rateNode, what: "a rate") {
            do { rate = try DatapathRule.parseRate(text) } catch {
                context.report(error.message, at: rateNode)
                ok = false
            }
        }
        guard ok, let action else { return nil }
        let rule = DatapathRule(
            destination: destination, port: port, action: action, labels: labels, rateBytesPerSecond: rate)
        return (rule, labelNodes)
    }
}

