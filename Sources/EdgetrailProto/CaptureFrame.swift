import SwiftProtobuf

extension Edgetrail_V1_CookieBatch {
    /// The batch as one frame of a capture file: `[length u32 little-endian][CookieBatch]`.
    /// Collectors write captures with `--capture`; central serves recent sessions in the same
    /// form, so `edgetrail filters test` and the portal's dry-run read either.
    public func captureFrame() throws -> [UInt8] {
        let bytes: [UInt8] = try serializedBytes()
        return withUnsafeBytes(of: UInt32(bytes.count).littleEndian) { Array($0) } + bytes
    }
}
