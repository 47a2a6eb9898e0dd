import Foundation
import Synchronization

/// A rule's regular expression with a time bound on every match.
///
/// ICU's matcher backtracks: a pattern like `/(a|aa)+$/` can take seconds on a 40-character
/// value, and the filter stage runs on the collector's one pipeline thread, so one such value
/// would hold up every other cookie. Lint refuses the usual culprit (a repeat inside a repeat,
/// ``RegexCost``); this bound catches the rest at run time. A match that runs past
/// ``budgetNanoseconds`` of CPU time is abandoned and counted in ``RegexBudget``: a condition then counts as
/// not matching (the record is kept), a redaction replaces the whole value (it fails closed).
final class BoundedRegex: @unchecked Sendable {
    /// How much CPU time one match may take.
    static let budgetNanoseconds: UInt64 = 10_000_000

    let pattern: String
    private let regex: NSRegularExpression

    init?(pattern: String) {
        guard let regex = try? NSRegularExpression(pattern: pattern) else { return nil }
        self.pattern = pattern
        self.regex = regex
    }

    /// Whether the pattern matches somewhere in `text`; nil when the match ran out of time.
    func matches(_ text: String) -> Bool? {
        var found = false
        let finished = run(text) { _ in
            found = true
            return false
        }
        return finished ? found : nil
    }

    /// Every match in `text`, in order; nil when matching ran out of time.
    func allMatches(_ text: String) -> [NSTextCheckingResult]? {
        var found: [NSTextCheckingResult] = []
        let finished = run(text) { match in
            found.append(match)
            return true
        }
        return finished ? found : nil
    }

    /// Enumerates matches while `each` returns true; false when the budget ran out.
    private func run(_ text: String, _ each: @escaping (NSTextCheckingResult) -> Bool) -> Bool {
        // With .reportProgress ICU calls back every few thousand steps with no result, so a
        // quick match never looks at a clock. The budget is this thread's CPU time, counted from
        // the first call back: a thread the machine set aside for a while is not out of time.
        var started: UInt64?
        var outOfTime = false
        regex.enumerateMatches(in: text, options: [.reportProgress], range: NSRange(text.startIndex..., in: text)) {
            match, _, stop in
            if let match {
                if !each(match) { stop.pointee = true }
                return
            }
            let now = Self.threadCPUNanoseconds()
            guard let started else {
                started = now
                return
            }
            if now &- started > Self.budgetNanoseconds {
                outOfTime = true
                stop.pointee = true
            }
        }
        if outOfTime { RegexBudget.record(pattern) }
        return !outOfTime
    }

    private static func threadCPUNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }
}

/// Matches abandoned at the time bound, since the process started (on the collector's
/// `/metrics`, and said by `filters test`).
public enum RegexBudget {
    private static let exceeded = Atomic<Int>(0)
    private static let lastPattern = Mutex<String>("")

    /// How long one match may run, in milliseconds (for messages).
    public static var budgetMilliseconds: Int { Int(BoundedRegex.budgetNanoseconds / 1_000_000) }

    /// Matches abandoned so far.
    public static var exceededCount: Int { exceeded.load(ordering: .relaxed) }

    /// The pattern of the last abandoned match, for the log line.
    public static var lastExceededPattern: String { lastPattern.withLock { $0 } }

    static func record(_ pattern: String) {
        exceeded.add(1, ordering: .relaxed)
        lastPattern.withLock { $0 = pattern }
    }
}

/// Finds, in a pattern, a repeat nested inside another unbounded repeat — `(a+)+`, `(a*)*`,
/// `(x+y)*` — the shape that makes a backtracking matcher take exponential time on a value that
/// almost matches. Lint refuses such patterns; ``BoundedRegex`` bounds what slips through.
enum RegexCost {
    /// What was found: the outer repeat's offset in the pattern (0-based, in characters).
    struct NestedRepeat: Equatable {
        var inner: Character
        var outer: String
        var offset: Int
    }

    static func nestedRepeat(in pattern: String) -> NestedRepeat? {
        let characters = Array(pattern)
        // Per open group: the first unbounded repeat found inside it, if any.
        var groups: [Character?] = []
        func noteRepeat(_ symbol: Character?) {
            guard let symbol, !groups.isEmpty, groups[groups.count - 1] == nil else { return }
            groups[groups.count - 1] = symbol
        }
        var index = 0
        while index < characters.count {
            switch characters[index] {
            case "\\":
                index += 2
            case "[":
                index = endOfClass(characters, from: index)
            case "(":
                groups.append(nil)
                index += 1
            case ")":
                let inner = groups.popLast() ?? nil
                index += 1
                guard case let (quantifier, next)? = readQuantifier(characters, at: index) else {
                    // An unrepeated group hands its inner repeat on to the group around it.
                    noteRepeat(inner)
                    continue
                }
                if let inner, quantifier.unbounded {
                    return NestedRepeat(inner: inner, outer: ")" + quantifier.text, offset: index)
                }
                noteRepeat(quantifier.unbounded ? quantifier.text.first : inner)
                index = next
            case "*", "+", "{":
                guard case let (quantifier, next)? = readQuantifier(characters, at: index) else {
                    index += 1
                    continue
                }
                if quantifier.unbounded { noteRepeat(quantifier.text.first) }
                index = next
            default:
                index += 1
            }
        }
        return nil
    }

    private struct Quantifier {
        var text: String
        var unbounded: Bool
    }

    /// The quantifier starting at `index` (with a lazy `?` or possessive `+` after it), and the
    /// index after it.
    private static func readQuantifier(_ characters: [Character], at index: Int) -> (Quantifier, Int)? {
        guard index < characters.count else { return nil }
        var next = index + 1
        var unbounded: Bool
        switch characters[index] {
        case "*", "+": unbounded = true
        case "?": unbounded = false
        case "{":
            // {n}, {n,}, {n,m}; anything else is a literal brace.
            var body = ""
            while next < characters.count, characters[next] != "}" {
                body.append(characters[next])
                next += 1
            }
            guard next < characters.count else { return nil }
            let parts = body.split(separator: ",", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count), parts.allSatisfy({ $0.allSatisfy(\.isNumber) }), !parts[0].isEmpty
            else { return nil }
            let upper = parts.count == 2 ? Int(parts[1]) : Int(parts[0])
            // A large bound backtracks like an unbounded one.
            unbounded = parts.count == 2 && (parts[1].isEmpty || (upper ?? 0) > 16)
            next += 1
        default:
            return nil
        }
        if next < characters.count, characters[next] == "?" || characters[next] == "+" { next += 1 }
        return (Quantifier(text: String(characters[index..<next]), unbounded: unbounded), next)
    }

    /// The index after a character class starting at `index` (`[` … `]`, `]` first is literal).
    private static func endOfClass(_ characters: [Character], from index: Int) -> Int {
        var next = index + 1
        if next < characters.count, characters[next] == "^" { next += 1 }
        if next < characters.count, characters[next] == "]" { next += 1 }
        var depth = 1
        while next < characters.count {
            switch characters[next] {
            case "\\": next += 1
            case "[": depth += 1
            case "]":
                depth -= 1
                if depth == 0 { return next + 1 }
            default: break
            }
            next += 1
        }
        return next
    }
}
