import CBPF
import Foundation

/// Our tc filters (handle 1, priority 1) on an interface's clsact hook, for the datapath and the
/// benchmark's probes alike: attached with the qdisc added when the interface has none, removed
/// with it when we added it.
struct TCAttachment {
    let ifindex: Int32
    let points: [bpf_tc_attach_point]
    /// Whether the qdisc goes when we detach: we added it, or took over one a run that did not
    /// shut down left with our filter in it.
    let ownsHook: Bool

    /// Attaches each program at its point on `interface` (`what` names them in errors); on a
    /// failure nothing stays attached.
    static func attach(
        _ programs: [(point: bpf_tc_attach_point, program: OpaquePointer)], interface: String, what: String
    ) throws(DatapathError) -> TCAttachment {
        let ifindex = Int32(bitPattern: if_nametoindex(interface))
        guard ifindex > 0 else { throw DatapathError("no interface \(interface) in this network namespace") }
        var hook = bpf_tc_hook()
        prepare(&hook, ifindex)
        let created = bpf_tc_hook_create(&hook)
        guard created == 0 || created == -EEXIST else { throw .system("cannot add a clsact qdisc to \(interface)", created) }
        var leftover = false
        if created != 0 {
            hook.attach_point = BPF_TC_INGRESS
            leftover = withOurFilter { bpf_tc_query(&hook, &$0) } == 0
        }
        let attachment = TCAttachment(ifindex: ifindex, points: programs.map(\.point), ownsHook: created == 0 || leftover)
        for (point, program) in programs {
            hook.attach_point = point
            let result = withOurFilter { options in
                options.prog_fd = bpf_program__fd(program)
                options.flags = UInt32(BPF_TC_F_REPLACE.rawValue)
                return bpf_tc_attach(&hook, &options)
            }
            guard result == 0 else {
                attachment.detach()
                throw .system("cannot attach \(what) to \(interface)", result)
            }
        }
        return attachment
    }

    /// Detaches the filters, and the qdisc if it is ours.
    func detach() {
        var hook = bpf_tc_hook()
        Self.prepare(&hook, ifindex)
        for point in points {
            hook.attach_point = point
            _ = Self.withOurFilter { bpf_tc_detach(&hook, &$0) }
        }
        if ownsHook {
            hook.attach_point = bpf_tc_attach_point(rawValue: BPF_TC_INGRESS.rawValue | BPF_TC_EGRESS.rawValue)
            _ = bpf_tc_hook_destroy(&hook)
        }
    }

    /// Makes `hook` the clsact hook (both directions) of an interface, in place (a copy would
    /// not keep its padding zero).
    private static func prepare(_ hook: inout bpf_tc_hook, _ ifindex: Int32) {
        zeroPadding(&hook)
        hook.sz = MemoryLayout<bpf_tc_hook>.size
        hook.ifindex = ifindex
        hook.attach_point = bpf_tc_attach_point(rawValue: BPF_TC_INGRESS.rawValue | BPF_TC_EGRESS.rawValue)
    }

    /// Runs a tc call with the options naming our filter (handle 1, priority 1), built in place
    /// so their padding stays zero.
    private static func withOurFilter(_ call: (inout bpf_tc_opts) -> Int32) -> Int32 {
        var options = bpf_tc_opts()
        zeroPadding(&options)
        options.sz = MemoryLayout<bpf_tc_opts>.size
        options.handle = 1
        options.priority = 1
        return call(&options)
    }
}
