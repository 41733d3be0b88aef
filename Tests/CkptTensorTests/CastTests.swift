@testable import CkptTensor
import Foundation
import XCTest

/// ckpt's float16/bfloat16/float32 casts against the bits torch's .half(), .bfloat16() and
/// .float() produce (fixtures/casts/casts.json, written by fixtures/casts/generate.py).
final class CastTests: XCTestCase {
    struct Golden: Decodable {
        struct F32: Decodable { var bits: [UInt32]; var half: [UInt16]; var bfloat16: [UInt16] }
        struct F64: Decodable { var bits: [UInt64]; var half: [UInt16]; var bfloat16: [UInt16]; var float32: [UInt32] }
        var float32: F32
        var float64: F64
    }

    static func golden() throws -> Golden {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("fixtures/casts/casts.json")
        return try JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
    }

    private func cast(_ bytes: [UInt8], from: DType, count: Int, to: DType) throws -> [UInt8] {
        let t = try Tensor(dtype: from, shape: [count], bytes: bytes)
        let s = try t.storage.cast(to: to)
        let c = try Tensor(storage: s, dtype: to, shape: [count], strides: [1], storageOffset: 0)
        return try c.contiguousBytes()
    }

    private func words<T: FixedWidthInteger>(_ b: [UInt8], _: T.Type) -> [T] {
        b.withUnsafeBytes { raw in (0 ..< b.count / MemoryLayout<T>.size).map { raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) } }
    }

    func testFloat32ToHalfAndBFloat16MatchTorchBitForBit() throws {
        let g = try Self.golden()
        let src = g.float32.bits.withUnsafeBytes { Array($0) }
        let n = g.float32.bits.count
        let half = words(try cast(src, from: .float32, count: n, to: .float16), UInt16.self)
        let bf = words(try cast(src, from: .float32, count: n, to: .bfloat16), UInt16.self)
        for i in 0 ..< n {
            let f = Float(bitPattern: g.float32.bits[i])
            if f.isNaN {
                XCTAssertTrue(Float(Float16(bitPattern: half[i])).isNaN)
                XCTAssertTrue(HalfFloat.float(fromBFloat16Bits: bf[i]).isNaN)
                continue
            }
            XCTAssertEqual(half[i], g.float32.half[i], "half of \(f)")
            XCTAssertEqual(bf[i], g.float32.bfloat16[i], "bfloat16 of \(f)")
        }
    }

    func testFloat64CastsGoThroughFloat32AsTorchDoes() throws {
        let g = try Self.golden()
        let src = g.float64.bits.withUnsafeBytes { Array($0) }
        let n = g.float64.bits.count
        let half = words(try cast(src, from: .float64, count: n, to: .float16), UInt16.self)
        let bf = words(try cast(src, from: .float64, count: n, to: .bfloat16), UInt16.self)
        let f32 = words(try cast(src, from: .float64, count: n, to: .float32), UInt32.self)
        for i in 0 ..< n where !Double(bitPattern: g.float64.bits[i]).isNaN {
            XCTAssertEqual(half[i], g.float64.half[i], "half of \(Double(bitPattern: g.float64.bits[i]))")
            XCTAssertEqual(bf[i], g.float64.bfloat16[i], "bfloat16 of \(Double(bitPattern: g.float64.bits[i]))")
            XCTAssertEqual(f32[i], g.float64.float32[i], "float of \(Double(bitPattern: g.float64.bits[i]))")
        }
    }

    func testStatsUseBesselsCorrectionAndCountSpecials() throws {
        let t = try Tensor(float32: [1, 2, 3, 4, .nan, .infinity, 0], shape: [7])
        let s = try TensorStats.compute(t)
        XCTAssertEqual(s.nanCount, 1)
        XCTAssertEqual(s.infCount, 1)
        XCTAssertEqual(s.zeroCount, 1)
        XCTAssertEqual(s.min, 0)
        XCTAssertEqual(s.max, .infinity)
        let finite = try TensorStats.compute(try Tensor(float32: [1, 2, 3, 4], shape: [2, 2]))
        XCTAssertEqual(finite.mean, 2.5)
        XCTAssertEqual(finite.std ?? 0, 1.2909944487358056, accuracy: 1e-12) // torch.tensor([1.,2,3,4]).std()
    }

    func testStridedViewsGatherLikeTorch() throws {
        // torch.arange(12.).reshape(3, 4).t()[1:, ::2] → [[1, 9], [2, 10], [3, 11]]
        let base = try Tensor(float32: (0 ..< 12).map(Float.init), shape: [12])
        let v = try Tensor(storage: base.storage, dtype: .float32, shape: [3, 2], strides: [1, 8], storageOffset: 1)
        XCTAssertFalse(v.isContiguous)
        XCTAssertEqual(try v.floats(), [1, 9, 2, 10, 3, 11])
        // stride-0 expand
        let e = try Tensor(storage: base.storage, dtype: .float32, shape: [2, 3], strides: [0, 1], storageOffset: 4)
        XCTAssertEqual(try e.floats(), [4, 5, 6, 4, 5, 6])
        // a view reaching one element past the storage is refused
        XCTAssertThrowsError(try Tensor(storage: base.storage, dtype: .float32, shape: [2], strides: [1], storageOffset: 11))
    }
}

/// The vectorised, two-core conversions against the one-element-at-a-time reference, bit for bit,
/// on every float16 and bfloat16 pattern and on float32 patterns chosen for rounding (ties,
/// subnormals, overflow, NaN payloads of both signs) plus a pseudo-random sweep.
final class FastCastTests: XCTestCase {
    func testFastPathsEqualTheScalarReference() {
        var f32: [UInt32] = []
        for e: UInt32 in [0, 1, 0x66, 0x67, 0x70, 0x71, 0x7E, 0x7F, 0x80, 0x8E, 0x8F, 0xFE, 0xFF] {
            for m: UInt32 in [0, 1, 0x1000, 0x1FFF, 0x2000, 0x3FFF, 0x6000, 0x8000, 0x7FFF, 0xFFFF, 0x10000, 0x18000, 0x400000, 0x7FFFFF] {
                f32.append(e << 23 | m)
                f32.append(0x8000_0000 | e << 23 | m)
            }
        }
        var x: UInt32 = 0x1234_5678
        while f32.count < 1 << 17 {
            x = x &* 1_664_525 &+ 1_013_904_223
            f32.append(x)
        }
        let halves = (0 ... 0xFFFF).map { UInt16($0) } + (0 ... 0xFFFF).map { UInt16($0) }
        func check(_ src: [UInt8], _ s: DType, _ t: DType) {
            let count = src.count / s.itemSize
            var fast = [UInt8](repeating: 0, count: count * t.itemSize)
            var slow = fast
            src.withUnsafeBytes { raw in
                fast.withUnsafeMutableBytes { HalfFloat.convert(raw, from: s, to: $0.baseAddress!, t, count: count) }
                slow.withUnsafeMutableBytes { HalfFloat.convertScalar(raw.baseAddress!, from: s, to: $0.baseAddress!, t, count: count) }
            }
            XCTAssertEqual(fast, slow, "\(s) -> \(t)")
        }
        let f32Bytes = f32.withUnsafeBytes { Array($0) }
        let halfBytes = halves.withUnsafeBytes { Array($0) }
        check(f32Bytes, .float32, .float16)
        check(f32Bytes, .float32, .bfloat16)
        check(halfBytes, .float16, .float32)
        check(halfBytes, .bfloat16, .float32)
        check(f32Bytes, .float32, .float64)
    }
}

/// A cast read chunk by chunk (as the writers read it) gives exactly the bytes of the cast held
/// whole, for every chunking and range, and never loads the whole result.
final class StreamedCastTests: XCTestCase {
    private func streamed(_ s: Storage, from: Int, length: Int, chunk: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        var largest = 0
        try s.forEachLittleEndianChunk(from: from, length: length, chunk: chunk) { part in
            largest = max(largest, part.count)
            out += part
        }
        XCTAssertLessThanOrEqual(largest, max(chunk / s.dtype.itemSize, 1) * s.dtype.itemSize, "a chunk larger than asked")
        return out
    }

    func testStreamedCastIsBitIdenticalToTheWholeCast() throws {
        let g = try CastTests.golden()
        let f32 = g.float32.bits.withUnsafeBytes { Array($0) }
        let f64 = g.float64.bits.withUnsafeBytes { Array($0) }
        let sources: [(DType, [UInt8])] = [(.float32, f32), (.float64, f64)]
        for (dtype, bytes) in sources {
            let source = Storage(key: "0", dtype: dtype, bytes: bytes)
            for target in [DType.float16, .bfloat16, .float32, .float64] where target != dtype {
                let wholeCast = try source.cast(to: target)
                let whole = try wholeCast.slice().withBytes { Array($0) }
                XCTAssertEqual(whole.count, source.elementCount * target.itemSize)
                let unit = target.itemSize
                let n = source.elementCount
                for chunk in [unit, 3 * unit, 7 * unit + 1, 64, 1 << 20] {
                    for (start, count) in [(0, n), (1, n - 1), (5, 17), (n - 1, 1), (3, 0)] {
                        let c = try source.cast(to: target)
                        let got = try streamed(c, from: start * unit, length: count * unit, chunk: chunk)
                        XCTAssertTrue(got == Array(whole[start * unit ..< (start + count) * unit]),
                                       "\(dtype.rawValue) → \(target.rawValue), chunk \(chunk), elements \(start)..<\(start + count)")
                        XCTAssertFalse(c.isLoaded, "streaming loaded the whole cast")
                    }
                }
            }
        }
    }

    func testCastOfACastStreamsThroughBoth() throws {
        let values: [Float] = (0 ..< 5000).map { Float($0) * 0.001 - 2.5 }
        let source = try Tensor(float32: values, shape: [values.count]).storage
        let twice = try source.cast(to: .float64).cast(to: .bfloat16)
        let directCast = try source.cast(to: .bfloat16)
        let direct = try directCast.slice().withBytes { Array($0) }
        XCTAssertTrue(try streamed(twice, from: 0, length: twice.byteCount, chunk: 1000) == direct)
        XCTAssertFalse(twice.isLoaded)
    }

    func testContiguousChunksOfAViewOverACastStream() throws {
        let values: [Float] = (0 ..< 4096).map { Float($0).squareRoot() }
        let source = try Tensor(float32: values, shape: [values.count]).storage
        let cast = try source.cast(to: .float16)
        // a contiguous view at an offset: its chunks are the cast of its elements only
        let view = try Tensor(storage: cast, dtype: .float16, shape: [10, 100], strides: [100, 1], storageOffset: 96)
        var got: [UInt8] = []
        var calls = 0
        try view.forEachContiguousChunk(chunk: 256) { got += $0; calls += 1 }
        XCTAssertFalse(cast.isLoaded)
        XCTAssertEqual(calls, 8, "2,000 bytes in chunks of 256")
        let expected = (96 ..< 1096).map { HalfFloat.halfBits(from: values[$0]) }
        XCTAssertEqual(got, expected.withUnsafeBytes { Array($0) })
    }
}
