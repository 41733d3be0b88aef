// CRC-32C (Castagnoli), the checksum of TensorFlow's record format (TFRecord, TensorBoard event
// files). Not the zip/zlib CRC-32: the polynomial differs (0x1EDC6F41, reflected 0x82F63B78), so
// zlib's `crc32` cannot stand in. Byte-at-a-time with a 256-entry table, which is plenty for the
// few hundred bytes an epoch's events take.

/// CRC-32C (Castagnoli; RFC 3720 §B.4), reflected, initial value and final XOR `0xFFFFFFFF`.
///
/// `CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283`. TensorFlow counterpart:
/// `tensorflow/core/lib/hash/crc32c.h` (`crc32c::Value`, `Extend`, `Mask`); in Python,
/// `tensorboard.compat.tensorflow_stub.pywrap_tensorflow.crc32c` / `masked_crc32c`.
public struct CRC32C: Sendable, Equatable {
    /// The reflected Castagnoli polynomial.
    public static let polynomial: UInt32 = 0x82F6_3B78

    /// The constant TensorFlow adds to a rotated CRC when it masks one (`kMaskDelta`).
    public static let maskDelta: UInt32 = 0xA282_EAD8

    /// The table for one byte: `table[i]` is the CRC register after shifting in byte `i`.
    static let table: [UInt32] = (0 ..< 256).map { (index: Int) -> UInt32 in
        var c = UInt32(index)
        for _ in 0 ..< 8 {
            c = (c & 1) != 0 ? (c >> 1) ^ CRC32C.polynomial : c >> 1
        }
        return c
    }

    /// The register, kept inverted as the algorithm runs (initial `0xFFFFFFFF`).
    private var register: UInt32 = 0xFFFF_FFFF

    /// A CRC over no bytes yet.
    public init() {}

    /// Adds `bytes` to the checksum (TensorFlow's `crc32c::Extend`).
    public mutating func update<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        var c = register
        CRC32C.table.withUnsafeBufferPointer { t in
            for b in bytes {
                c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8)
            }
        }
        register = c
    }

    /// The CRC of everything added so far (adding more afterwards continues it).
    public var value: UInt32 { register ^ 0xFFFF_FFFF }

    /// The CRC-32C of `bytes`.
    public static func checksum<S: Sequence>(_ bytes: S) -> UInt32 where S.Element == UInt8 {
        var crc = CRC32C()
        crc.update(bytes)
        return crc.value
    }

    /// TensorFlow's masked CRC, `((crc >> 15) | (crc << 17)) &+ 0xa282ead8`: what a record stores,
    /// so that a CRC of data that itself holds CRCs does not degenerate (`crc32c::Mask`).
    public static func mask(_ crc: UInt32) -> UInt32 {
        ((crc >> 15) | (crc << 17)) &+ maskDelta
    }

    /// Undoes `mask(_:)` (`crc32c::Unmask`).
    public static func unmask(_ masked: UInt32) -> UInt32 {
        let rotated = masked &- maskDelta
        return (rotated >> 17) | (rotated << 15)
    }

    /// `mask(checksum(bytes))`, as a TensorFlow record stores it.
    public static func maskedChecksum<S: Sequence>(_ bytes: S) -> UInt32 where S.Element == UInt8 {
        mask(checksum(bytes))
    }
}
