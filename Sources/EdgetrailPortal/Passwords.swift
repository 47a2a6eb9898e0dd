import Crypto
import Foundation
import _CryptoExtras

/// Passwords are stored as `pbkdf2-sha256$ROUNDS$SALT$KEY` (salt and key in base64): a salted,
/// deliberately slow hash, so a stolen portal file does not give the passwords away cheaply. The
/// rounds are stored with each hash, so raising them later keeps old hashes verifiable.
public struct PasswordHasher: Sendable {
    /// OWASP's figure for PBKDF2-HMAC-SHA256 (2023): 600,000.
    public static let defaultRounds = 600_000
    /// The least BoringSSL's PBKDF2 accepts; for tests, where hundreds of logins happen.
    public static let minimumRounds = 210_000

    public var rounds: Int

    public init(rounds: Int = PasswordHasher.defaultRounds) {
        self.rounds = max(rounds, Self.minimumRounds)
    }

    public func hash(_ password: String) -> String {
        var salt = [UInt8](repeating: 0, count: 16)
        var generator = SystemRandomNumberGenerator()
        for index in salt.indices { salt[index] = generator.next() }
        let key = Self.derive(password, salt: salt, rounds: rounds)
        return "pbkdf2-sha256$\(rounds)$\(Data(salt).base64EncodedString())$\(Data(key).base64EncodedString())"
    }

    /// True when `password` is the one `stored` was made from. Compares in constant time.
    public static func verify(_ password: String, against stored: String) -> Bool {
        let parts = stored.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "pbkdf2-sha256", let rounds = Int(parts[1]), rounds >= minimumRounds,
            let salt = Data(base64Encoded: String(parts[2])), let expected = Data(base64Encoded: String(parts[3])),
            expected.count == 32
        else { return false }
        let key = derive(password, salt: [UInt8](salt), rounds: rounds)
        var difference: UInt8 = 0
        for (a, b) in zip(key, expected) { difference |= a ^ b }
        return difference == 0
    }

    static func derive(_ password: String, salt: [UInt8], rounds: Int) -> [UInt8] {
        // Rounds are never below the minimum here, so derivation cannot fail.
        let key = try! KDF.Insecure.PBKDF2.deriveKey(
            from: Array(password.utf8), salt: salt, using: .sha256, outputByteCount: 32, rounds: rounds)
        return key.withUnsafeBytes { Array($0) }
    }
}

/// Random tokens: session CSRF tokens, API tokens, first passwords.
enum Secrets {
    static func randomHex(bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        var text = ""
        for _ in 0..<bytes {
            let byte: UInt8 = generator.next()
            text += String(byte >> 4, radix: 16) + String(byte & 0x0f, radix: 16)
        }
        return text
    }

    /// A password a person can type: 20 characters from an alphabet without look-alikes (~112 bits).
    static func password() -> String {
        let alphabet = Array("abcdefghjkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY346789")
        var generator = SystemRandomNumberGenerator()
        return String((0..<20).map { _ in alphabet[Int(generator.next(upperBound: UInt(alphabet.count)))] })
    }

    /// What the portal keeps of an API token: its SHA-256, so the file never holds a usable token.
    static func digest(_ token: String) -> String {
        SHA256.hash(data: Array(token.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let left = Array(a.utf8)
        let right = Array(b.utf8)
        guard left.count == right.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(left, right) { difference |= x ^ y }
        return difference == 0
    }
}
