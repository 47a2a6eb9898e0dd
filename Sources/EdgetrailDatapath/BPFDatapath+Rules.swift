import CBPF
import EdgetrailCore
import Foundation

// MARK: Rules

extension BPFDatapath {
    /// How many rules the loaded program's maps hold (`ET_MAX_RULES`).
    public static var ruleCapacity: Int { Int(ET_MAX_RULES) }

    /// Checks a rule set before anything is written: every problem, each naming its rule.
    public static func problems(in rules: [DatapathRule], pods: [DatapathPod]) -> [String] {
        var problems: [String] = []
        if rules.count > Int(ET_MAX_RULES) {
            problems.append("\(rules.count) rules; the datapath holds at most \(ET_MAX_RULES)")
        }
        var seen: [String: Int] = [:]
        for (index, rule) in rules.enumerated() {
            let name = "rule \(index + 1) (\(rule.shorthand))"
            if let destination = rule.destination, !destination.isIPv4 {
                problems.append("\(name): only IPv4 destinations are supported by the datapath")
            }
            let key = "\(rule.destination?.description ?? "*") \(rule.port.map(String.init) ?? "*")"
            if let first = seen[key] {
                problems.append("\(name): the same destination and port as rule \(first + 1); one of them could never match")
            } else {
                seen[key] = index
            }
            switch rule.action {
            case .redirect, .copy:
                let targets = pods.filter { pod in rule.labels.contains { pod.labels.contains($0) } }
                if rule.labels.isEmpty {
                    problems.append("\(name): \(rule.action.rawValue) needs the label of the pods to send to (=> [label])")
                } else if targets.isEmpty {
                    problems.append("\(name): no pod carries the label \(rule.labels.joined(separator: ", "))")
                } else if targets.count > Int(ET_MAX_BACKENDS) {
                    problems.append("\(name): \(targets.count) pods carry the label; at most \(ET_MAX_BACKENDS) per rule")
                }
                for pod in targets where if_nametoindex(pod.nodeInterface) == 0 {
                    problems.append("\(name): pod \(pod.name)'s interface \(pod.nodeInterface) does not exist on the node")
                }
                for pod in targets where pod.mac.count != 6 {
                    problems.append("\(name): pod \(pod.name) has no 6-byte MAC address")
                }
            case .ratelimit:
                if (rule.rateBytesPerSecond ?? 0) == 0 {
                    problems.append("\(name): ratelimit needs a rate above zero (e.g. 1MB/s)")
                }
            case .deny:
                break
            }
        }
        return problems
    }

    /// Makes `rules` the active rule set, atomically; a set with problems is refused whole.
    /// Returns the new version.
    @discardableResult
    public func apply(_ rules: [DatapathRule], pods: [DatapathPod]) throws(DatapathError) -> UInt64 {
        let problems = Self.problems(in: rules, pods: pods)
        guard problems.isEmpty else {
            throw DatapathError("rule set refused, the active rules stay:\n  " + problems.joined(separator: "\n  "))
        }
        let next: UInt8 = generation ^ 1
        clear(generation: next)
        do {
            for rule in rules {
                try write(rule, pods: pods, generation: next)
            }
        } catch {
            clear(generation: next)
            throw error
        }
        try setSettings(generation: next, newRules: true)
        let previous = generation
        generation = next
        clear(generation: previous)
        self.rules = rules
        version += 1
        return version
    }

    private func write(_ rule: DatapathRule, pods: [DatapathPod], generation: UInt8) throws(DatapathError) {
        let id = nextRuleID
        nextRuleID &+= 1
        ruleIDs[Int(generation)].append(id)
        // The slot may hold the counts of a rule 2,048 ids ago.
        var slot = Self.statsSlot(id)
        var zeros = [et_rule_stats](repeating: et_rule_stats(), count: possibleCPUs)
        let cleared = bpf_map_update_elem(mapFD(.ruleStats), &slot, &zeros, UInt64(BPF_ANY))
        guard cleared == 0 else { throw .system("cannot reset the rule_stats map", cleared) }
        let prefixLength = rule.destination?.length ?? 0
        let address = rule.destination?.address ?? [0, 0, 0, 0]
        let targets = pods.filter { pod in rule.labels.contains { pod.labels.contains($0) } }
        var value = et_rule()
        value.id = id
        value.action = Self.actionCode(rule.action)
        value.rank = UInt32(prefixLength * 2 + (rule.port == nil ? 0 : 1))
        value.backend_count = rule.action == .redirect || rule.action == .copy ? UInt32(targets.count) : 0
        value.rate_bytes_per_second = rule.rateBytesPerSecond ?? 0
        // A burst of a quarter second's worth (TCP needs room for its window), at least a full packet.
        value.burst_bytes = max((rule.rateBytesPerSecond ?? 0) / 4, 1514)
        if let port = rule.port {
            var key = et_port_key()
            key.prefixlen = UInt32(8 + 16 + prefixLength)
            key.generation = generation
            key.port = (UInt8(port >> 8), UInt8(port & 0xff))
            key.addr = (address[0], address[1], address[2], address[3])
            try update(.portRules, key, value)
            written[Int(generation)].append(.portRule(key))
        } else {
            var key = et_any_key()
            key.prefixlen = UInt32(8 + prefixLength)
            key.generation = generation
            key.addr = (address[0], address[1], address[2], address[3])
            try update(.anyRules, key, value)
            written[Int(generation)].append(.anyRule(key))
        }
        if value.backend_count > 0 {
            for (index, pod) in targets.enumerated() {
                var backend = et_backend()
                backend.ifindex = if_nametoindex(pod.nodeInterface)
                backend.pod_mac = (pod.mac[0], pod.mac[1], pod.mac[2], pod.mac[3], pod.mac[4], pod.mac[5])
                let nodeMAC = Self.mac(of: pod.nodeInterface)
                backend.node_mac = (nodeMAC[0], nodeMAC[1], nodeMAC[2], nodeMAC[3], nodeMAC[4], nodeMAC[5])
                let key = et_backend_key(rule_id: id, index: UInt32(index))
                try update(.backends, key, backend)
                written[Int(generation)].append(.backend(key))
            }
        }
        if rule.action == .ratelimit {
            var bucket = et_bucket()
            bucket.tokens = value.burst_bytes
            try update(.buckets, id, bucket)
            written[Int(generation)].append(.bucket(id))
        }
    }

    private func clear(generation: UInt8) {
        for entry in written[Int(generation)] {
            switch entry {
            case .portRule(let key): delete(.portRules, key)
            case .anyRule(let key): delete(.anyRules, key)
            case .backend(let key): delete(.backends, key)
            case .bucket(let id): delete(.buckets, id)
            }
        }
        written[Int(generation)] = []
        ruleIDs[Int(generation)] = []
    }

    static func actionCode(_ action: DatapathAction) -> UInt32 {
        switch action {
        case .redirect: UInt32(ET_ACTION_REDIRECT.rawValue)
        case .copy: UInt32(ET_ACTION_COPY.rawValue)
        case .deny: UInt32(ET_ACTION_DENY.rawValue)
        case .ratelimit: UInt32(ET_ACTION_RATELIMIT.rawValue)
        }
    }

    static func action(code: UInt32) -> DatapathAction? {
        switch code {
        case UInt32(ET_ACTION_REDIRECT.rawValue): .redirect
        case UInt32(ET_ACTION_COPY.rawValue): .copy
        case UInt32(ET_ACTION_DENY.rawValue): .deny
        case UInt32(ET_ACTION_RATELIMIT.rawValue): .ratelimit
        default: nil
        }
    }

    /// An interface's MAC address, from sysfs.
    static func mac(of interface: String) -> [UInt8] {
        let text = (try? String(contentsOfFile: "/sys/class/net/\(interface)/address", encoding: .utf8)) ?? ""
        let bytes = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":").compactMap { UInt8($0, radix: 16) }
        return bytes.count == 6 ? bytes : [0, 0, 0, 0, 0, 0]
    }
}
