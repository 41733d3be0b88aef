@testable import CkptTensor
import Foundation
import XCTest

/// `TensorDifference.compare` reads both tensors chunk by chunk; whatever the chunking, it must
/// report exactly what a comparison of the whole tensors (computed here from `doubles()`) reports.
final class TensorCompareTests: XCTestCase {
    /// The comparison done whole, the way the old whole-tensor code did it.
    private func reference(_ a: Tensor, _ b: Tensor, tolerance: (rtol: Double, atol: Double)?) throws -> TensorDifference {
        var r = TensorDifference(identical: true, maxAbsolute: 0, nanMismatches: 0, differingElements: 0)
        if a.dtype == b.dtype, try a.contiguousBytes() == b.contiguousBytes() { return r }
        r.identical = false
        let x = try a.doubles(), y = try b.doubles()
        for (u, v) in zip(x, y) {
            if u.isNaN || v.isNaN {
                if u.isNaN != v.isNaN { r.nanMismatches += 1; r.differingElements += 1; r.outsideTolerance += 1 }
                continue
            }
            if u != v {
                r.differingElements += 1
                let d = abs(u - v)
                if d > r.maxAbsolute { r.maxAbsolute = d }
                if let t = tolerance, !(d <= t.atol + t.rtol * abs(v)) || u.isInfinite || v.isInfinite { r.outsideTolerance += 1 }
            }
        }
        return r
    }

    private func check(_ a: Tensor, _ b: Tensor, tolerance: (rtol: Double, atol: Double)? = nil, _ what: String,
                       file: StaticString = #filePath, line: UInt = #line) throws {
        let expected = try reference(a, b, tolerance: tolerance)
        for chunk in [16, 48, 1000, TensorDifference.chunkElements] {
            let got = try TensorDifference.compare(a, b, tolerance: tolerance, chunkElements: chunk)
            XCTAssertEqual(got, expected, "\(what), chunks of \(chunk) elements", file: file, line: line)
        }
    }

    private func floats(_ n: Int, seed: UInt64) -> [Float] {
        var s = seed
        return (0 ..< n).map { _ in
            s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: s >> 11) % 2_000_001 - 1_000_000) / 1000
        }
    }

    func testChunkedComparisonEqualsTheWholeOne() throws {
        let n = 3000
        let x = floats(n, seed: 1)
        var y = x
        y[0] = -y[0] - 1       // first chunk
        y[1777] += 0.25        // a middle chunk
        y[n - 1] = .nan        // the last, short chunk
        y[20] = x[20] == 0 ? 1 : 0
        let a = try Tensor(float32: x, shape: [30, 100]), b = try Tensor(float32: y, shape: [30, 100])
        try check(a, a, "identical")
        try check(a, b, "a few differences")
        try check(a, b, tolerance: (rtol: 1e-3, atol: 0.3), "within tolerance")
        var z = x
        for i in stride(from: 0, to: n, by: 7) { z[i] = -0.0 * z[i] }
        try check(a, try Tensor(float32: z, shape: [30, 100]), "signed zeros and negations")
        let nanBoth = try Tensor(float32: [Float.nan, 1, .infinity], shape: [3])
        try check(nanBoth, nanBoth, "NaN on both sides")
        try check(nanBoth, try Tensor(float32: [Float.nan, 1, -.infinity], shape: [3]), "infinities of both signs")
    }

    func testViewsCastsAndLazyBitsCompareAsTheirValues() throws {
        let x = floats(4096, seed: 7)
        let base = try Tensor(float32: x, shape: [64, 64])
        // a transposed view against its contiguous copy: equal, element by element in row-major order
        let t = try Tensor(storage: base.storage, dtype: .float32, shape: [64, 64], strides: [1, 64], storageOffset: 0)
        var copy = [Float](repeating: 0, count: 4096)
        for i in 0 ..< 64 { for j in 0 ..< 64 { copy[i * 64 + j] = x[j * 64 + i] } }
        try check(t, try Tensor(float32: copy, shape: [64, 64]), "transposed view against its copy")
        XCTAssertTrue(try TensorDifference.compare(t, try Tensor(float32: copy, shape: [64, 64]), chunkElements: 16).identical)
        try check(t, base, "transposed view against the original")
        // a strided slice with an offset and a stride-0 expand
        let sliced = try Tensor(storage: base.storage, dtype: .float32, shape: [20, 3, 7], strides: [130, 0, 9], storageOffset: 5)
        let other = try Tensor(storage: base.storage, dtype: .float32, shape: [20, 3, 7], strides: [128, 0, 9], storageOffset: 6)
        try check(sliced, other, "strided views with stride 0")
        // a float16 cast compares by value and is never identical
        let half = try Tensor(storage: base.storage.cast(to: .float16), dtype: .float16, shape: [64, 64], strides: [64, 1], storageOffset: 0)
        try check(base, half, "float32 against its float16 cast")
        XCTAssertFalse(try TensorDifference.compare(base, half).identical)
        // torch's lazy negative bit and a big-endian storage are applied chunk by chunk
        let negated = try Tensor(storage: base.storage, dtype: .float32, shape: [64, 64], strides: [64, 1], storageOffset: 0, isNegated: true)
        try check(negated, try Tensor(float32: x.map { -$0 }, shape: [64, 64]), "negative bit")
        let swapped = x.flatMap { v -> [UInt8] in withUnsafeBytes(of: v.bitPattern.bigEndian) { Array($0) } }
        let bigStorage = Storage(key: "be", dtype: .float32, byteCount: swapped.count, byteOrder: .big) { ByteSlice(region: ByteRegion(swapped)) }
        let big = try Tensor(storage: bigStorage, dtype: .float32, shape: [4096], strides: [1], storageOffset: 0)
        try check(big, try Tensor(float32: x, shape: [4096]), "big-endian storage")
        let bigView = try Tensor(storage: bigStorage, dtype: .float32, shape: [64, 64], strides: [1, 64], storageOffset: 0)
        try check(bigView, t, "big-endian transposed view")
    }

    func testComplexBoolAndEmptyTensors() throws {
        let c = (0 ..< 512).flatMap { i -> [UInt8] in withUnsafeBytes(of: (Float(i), Float(-i))) { Array($0) } }
        var d = c
        d[8 * 300 + 4] ^= 0x01 // one imaginary part
        let a = try Tensor(dtype: .complex64, shape: [512], bytes: c), b = try Tensor(dtype: .complex64, shape: [512], bytes: d)
        try check(a, b, "complex64")
        let conj = try Tensor(storage: a.storage, dtype: .complex64, shape: [512], strides: [1], storageOffset: 0, isConjugated: true)
        try check(conj, a, "conjugate bit")
        let bools = try Tensor(dtype: .bool, shape: [100], bytes: (0 ..< 100).map { UInt8($0 % 2) })
        let flipped = try Tensor(dtype: .bool, shape: [100], bytes: (0 ..< 100).map { UInt8(($0 + ($0 == 50 ? 1 : 0)) % 2) })
        try check(bools, flipped, "bool")
        // empty: identical in one dtype, never identical across two
        let e32 = try Tensor(float32: [], shape: [0, 4])
        XCTAssertTrue(try TensorDifference.compare(e32, e32).identical)
        let e16 = try Tensor(dtype: .float16, shape: [0, 4], bytes: [])
        try check(e32, e16, "empty, two dtypes")
        XCTAssertFalse(try TensorDifference.compare(e32, e16).identical)
        // float8 cannot be read as numbers: a difference is reported, never a value
        let f8a = try Tensor(dtype: .float8_e4m3fn, shape: [40], bytes: [UInt8](repeating: 1, count: 40))
        var bytes = [UInt8](repeating: 1, count: 40)
        bytes[39] = 2
        let f8b = try Tensor(dtype: .float8_e4m3fn, shape: [40], bytes: bytes)
        let r = try TensorDifference.compare(f8a, f8b, chunkElements: 16)
        XCTAssertFalse(r.identical)
        XCTAssertTrue(r.maxAbsolute.isNaN)
        XCTAssertEqual(r.differingElements, 40)
        XCTAssertTrue(try TensorDifference.compare(f8a, f8a, chunkElements: 16).identical)
    }

    func testRunawayExpandedViewsAreStillRefused() throws {
        let one = try Tensor(float32: [1], shape: [1])
        let huge = try Tensor(storage: one.storage, dtype: .float32, shape: [1 << 20, 1 << 20], strides: [0, 0], storageOffset: 0)
        XCTAssertThrowsError(try TensorDifference.compare(huge, huge)) { e in
            guard case TensorError.tooLarge = e else { return XCTFail("\(e)") }
        }
    }
}

/// Statistics computed chunk by chunk equal, bit for bit, those of the whole tensor at once.
final class ChunkedStatsTests: XCTestCase {
    /// Both ways compared by their text (an infinity makes the mean NaN, and NaN != NaN).
    private func same(_ t: Tensor, _ u: Tensor) throws -> String {
        let chunked = "\(try TensorStats.compute(t))", whole = "\(try TensorStats.computeWhole(u))"
        return chunked == whole ? "equal" : "\(chunked) != \(whole)"
    }

    func testChunkedStatisticsEqualTheWholeOnes() throws {
        var s: UInt64 = 3
        let n = (1 << 18) * 2 + 777
        let values: [Float] = (0 ..< n).map { i in
            s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            if i % 10_007 == 0 { return .nan }
            if i % 20_011 == 0 { return -.infinity }
            if i % 333 == 0 { return 0 }
            return Float(Int64(bitPattern: s >> 11) % 2_000_001 - 1_000_000) / 977
        }
        let t = try Tensor(float32: values, shape: [n])
        XCTAssertEqual(try same(t, t), "equal")
        // a strided view, a float16 cast and a complex tensor too
        let view = try Tensor(storage: t.storage, dtype: .float32, shape: [1000, 300], strides: [500, 1], storageOffset: 3)
        XCTAssertEqual(try same(view, view), "equal")
        let half = try Tensor(storage: t.storage.cast(to: .float16), dtype: .float16, shape: [n], strides: [1], storageOffset: 0)
        XCTAssertEqual(try same(half, half), "equal")
        let complex = try Tensor(storage: t.storage, dtype: .complex64, shape: [n / 2], strides: [1], storageOffset: 0)
        XCTAssertEqual(try same(complex, complex), "equal")
        XCTAssertEqual(try TensorStats.compute(try Tensor(float32: [], shape: [0])).count, 0)
    }
}
