import CkptFormat
import CkptTensor
import Foundation
import XCTest

/// Sparse tensors (fixtures/sparse, written by its generator with real torch): ckpt reads every
/// COO, CSR, CSC, BSR and BSC tensor torch's `weights_only` loader gives — layout, size, nnz,
/// coalesced flag, the pickled parts and the dense values they stand for — and refuses, with
/// torch's own words, every file whose indices torch's post-load check refuses (indices that
/// would reach outside the tensor). Written back as `.pth`, a file reads the same again.
final class SparseTensorTests: XCTestCase {
    static let folder = GoldenFixtureTests.fixtures.appendingPathComponent("sparse")

    struct Case {
        let name: String
        let entry: JSONValue
        var path: String { SparseTensorTests.folder.appendingPathComponent("files").appendingPathComponent(name).path }
        var loads: Bool { entry["loads"] == .bool(true) }
    }

    static func cases() throws -> [Case] {
        let data = try Data(contentsOf: folder.appendingPathComponent("expected.json"))
        let expected = try data.withUnsafeBytes { try JSONValue.parse($0) }
        guard case let .object(files)? = expected["files"] else { throw XCTSkip("no files in expected.json") }
        return files.map { Case(name: $0.key, entry: $0.value) }.sorted { $0.name < $1.name }
    }

    static func doubles(_ v: JSONValue?) -> [Double] { v?.arrayValue?.compactMap { $0.numberValue?.doubleValue } ?? [] }

    /// The dense values a sparse tensor stands for, row-major (duplicates of an uncoalesced COO
    /// tensor summed, as `to_dense()` sums them): an independent reading of the layouts.
    static func dense(_ t: SparseTensor) throws -> [Double] {
        let strides = Tensor.contiguousStrides(t.size)
        var out = [Double](repeating: 0, count: t.size.reduce(1, *))
        let values = try t.values.doubles()
        switch t.layout {
        case .coo:
            let ix = try t.indices[0].integerValues()
            let sparseDim = t.indices[0].shape[0], nnz = t.nnz
            let block = nnz == 0 ? 0 : values.count / nnz
            for j in 0 ..< nnz {
                var base = 0
                for d in 0 ..< sparseDim { base += ix[d * nnz + j] * strides[d] }
                for k in 0 ..< block { out[base + k] += values[j * block + k] }
            }
        default:
            let c = try t.indices[0].integerValues(), p = try t.indices[1].integerValues()
            let b = t.indices[0].shape.count - 1
            let batches = t.size[..<b].reduce(1, *), segments = t.indices[0].shape[b], nnz = t.nnz
            let blockShape = t.layout.isBlocked ? [t.values.shape[b + 1], t.values.shape[b + 2]] : [1, 1]
            let denseCount = t.size[(b + 2)...].reduce(1, *)
            let perEntry = blockShape[0] * blockShape[1] * denseCount
            for batch in 0 ..< batches {
                for s in 0 ..< segments - 1 {
                    for j in c[batch * segments + s] ..< c[batch * segments + s + 1] {
                        let q = p[batch * nnz + j]
                        let (blockRow, blockColumn) = t.layout.compressesRows ? (s, q) : (q, s)
                        for r in 0 ..< blockShape[0] {
                            for col in 0 ..< blockShape[1] {
                                let row = blockRow * blockShape[0] + r, column = blockColumn * blockShape[1] + col
                                let base = batch * (b > 0 ? strides[b - 1] : 0) + row * strides[b] + column * strides[b + 1]
                                for k in 0 ..< denseCount {
                                    out[base + k] += values[(batch * nnz + j) * perEntry + (r * blockShape[1] + col) * denseCount + k]
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Checks everything `read` holds against torch's list, in order.
    func assertMatches(_ read: Checkpoint, _ c: Case, file: StaticString = #filePath, line: UInt = #line) throws {
        guard case let .dict(root) = read.root else { return XCTFail("\(c.name): root is a \(read.root.typeName)", file: file, line: line) }
        let expected = c.entry["entries"]?.arrayValue ?? []
        XCTAssertEqual(root.items.compactMap { $0.key.stringValue }, expected.compactMap { $0["name"]?.stringValue }, "\(c.name): names", file: file, line: line)
        for ((_, v), e) in zip(root.items, expected) {
            let what = "\(c.name): \(e["name"]?.stringValue ?? "?")"
            switch v {
            case let .tensor(t):
                XCTAssertNil(e["device"], "\(what): read as a dense tensor with values", file: file, line: line)
                XCTAssertNil(e["layout"], "\(what): read dense, torch has \(e["layout"]?.stringValue ?? "")", file: file, line: line)
                XCTAssertEqual(try t.doubles(), Self.doubles(e["values"]), what, file: file, line: line)
            case let .sparse(t):
                XCTAssertEqual(t.layout.rawValue, e["layout"]?.stringValue, what, file: file, line: line)
                XCTAssertEqual(t.dtype.rawValue, e["dtype"]?.stringValue, what, file: file, line: line)
                XCTAssertEqual(t.size, GoldenFixtureTests.ints(e["size"]), what, file: file, line: line)
                XCTAssertEqual(t.nnz, e["nnz"]?.numberValue?.intValue, what, file: file, line: line)
                if case let .bool(coalesced)? = e["is_coalesced"] { XCTAssertEqual(t.isCoalesced, coalesced, what, file: file, line: line) }
                XCTAssertEqual(t.isParameter, e["is_parameter"] == .bool(true), "\(what): Parameter", file: file, line: line)
                XCTAssertEqual(t.requiresGrad, e["requires_grad"] == .bool(true), "\(what): requires_grad", file: file, line: line)
                let parts = e["parts"]?.arrayValue ?? []
                XCTAssertEqual(t.parts.count, parts.count, what, file: file, line: line)
                for (part, ep) in zip(t.parts, parts) {
                    XCTAssertEqual(part.dtype.rawValue, ep["dtype"]?.stringValue, what, file: file, line: line)
                    XCTAssertEqual(part.shape, GoldenFixtureTests.ints(ep["shape"]), what, file: file, line: line)
                    XCTAssertEqual(try part.doubles(), Self.doubles(ep["values"]), "\(what): \(ep["name"]?.stringValue ?? "")", file: file, line: line)
                }
                XCTAssertEqual(try Self.dense(t), Self.doubles(e["dense"]), "\(what): dense values", file: file, line: line)
            case let .meta(t):
                XCTAssertEqual(e["device"]?.stringValue, "meta", what, file: file, line: line)
                XCTAssertEqual(t.dtype.rawValue, e["dtype"]?.stringValue, what, file: file, line: line)
                XCTAssertEqual(t.shape, GoldenFixtureTests.ints(e["shape"]), what, file: file, line: line)
                XCTAssertEqual(t.strides, GoldenFixtureTests.ints(e["stride"]), what, file: file, line: line)
                XCTAssertEqual(t.isParameter, e["is_parameter"] == .bool(true), "\(what): Parameter", file: file, line: line)
                XCTAssertEqual(t.requiresGrad, e["requires_grad"] == .bool(true), "\(what): requires_grad", file: file, line: line)
            default:
                XCTFail("\(what): read a \(v.typeName)", file: file, line: line)
            }
        }
    }

    func testReadsWhatTorchLoadsAndRefusesWhatTorchRefuses() throws {
        var read = 0, refused = 0
        for c in try Self.cases() {
            do {
                let ckpt = try CheckpointReader.read(path: c.path)
                XCTAssertTrue(c.loads, "\(c.name): read, but torch refuses it (\(c.entry["error"]?.stringValue ?? ""))")
                try assertMatches(ckpt, c)
                XCTAssertEqual(ckpt.info.sparseTensors, ckpt.sparseTensors.count, c.name)
                XCTAssertTrue(ckpt.info.isWeightsOnlyLoadable, c.name)
                read += 1
            } catch let e as FormatError {
                XCTAssertFalse(c.loads, "\(c.name): refused, but torch loads it: \(e)")
                XCTAssertEqual(e.kind, .corrupt, "\(c.name): \(e)")
                let torchSays = try XCTUnwrap(c.entry["error"]?.stringValue)
                XCTAssertTrue("\(e)".contains(torchSays), "\(c.name): ckpt says \(e); torch says \(torchSays)")
                XCTAssertFalse("\(e)".contains("\n"), "\(e)")
                refused += 1
            }
        }
        XCTAssertEqual(read, 15)
        XCTAssertEqual(refused, 12)
    }

    /// A sparse checkpoint written back as `.pth` (`_rebuild_sparse_tensor` around the same parts,
    /// the Parameter kept) reads exactly as the original; fixtures/sparse/check_written.py loads
    /// such files in torch.
    func testWrittenBackReadsTheSame() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-sparse-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var written = 0
        for c in try Self.cases() where c.loads {
            let out = dir.appendingPathComponent(c.name).path
            try CheckpointWriter.write(try CheckpointReader.read(path: c.path), to: out)
            try assertMatches(try CheckpointReader.read(path: out), c)
            written += 1
        }
        XCTAssertEqual(written, 15)
    }

    func testSafetensorsRefusesSparseTensorsInOneLine() throws {
        let c = try XCTUnwrap(try Self.cases().first { $0.name == "coo_state_dict.pth" })
        let ckpt = try CheckpointReader.read(path: c.path)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-sparse-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        XCTAssertThrowsError(try CheckpointWriter.write(ckpt, to: out)) { e in
            XCTAssertTrue("\(e)".contains("'adj' is a sparse tensor (sparse_coo float32 [6, 7] nnz 4)"), "\(e)")
            XCTAssertFalse("\(e)".contains("\n"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    func testMetaTensorsAreShapesWithoutDataAndRefusedWhereValuesAreNeeded() throws {
        let c = try XCTUnwrap(try Self.cases().first { $0.name == "meta_state_dict.pth" })
        let ckpt = try CheckpointReader.read(path: c.path)
        XCTAssertEqual(ckpt.metaTensors.map(\.path), ["fc.weight", "fc.bias", "steps", "head"])
        XCTAssertEqual(ckpt.tensors.map(\.path), ["dense"])
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-meta-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        XCTAssertThrowsError(try CheckpointWriter.write(ckpt, to: out)) { e in
            XCTAssertTrue("\(e)".contains("'fc.weight' is a meta tensor (no data) (meta float32 [2, 3])"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    /// The structure is checked when the tensor is built, before any index is read.
    func testStructureIsCheckedAtConstruction() throws {
        let values = try Tensor(float32: [1, 2], shape: [2])
        let indices = try Tensor(dtype: .int64, shape: [2, 2], bytes: [0, 1, 1, 2].flatMap { withUnsafeBytes(of: Int64($0).littleEndian, Array.init) })
        XCTAssertNoThrow(try SparseTensor(layout: .coo, size: [3, 4], indices: [indices], values: values))
        // a size of the wrong rank, nnz that disagree, float indices, a CSR without enough rows
        XCTAssertThrowsError(try SparseTensor(layout: .coo, size: [3, 4, 5], indices: [indices], values: values))
        XCTAssertThrowsError(try SparseTensor(layout: .coo, size: [3, 4], indices: [indices], values: try Tensor(float32: [1, 2, 3], shape: [3])))
        XCTAssertThrowsError(try SparseTensor(layout: .coo, size: [3, 4], indices: [try Tensor(float32: [0, 1, 1, 2], shape: [2, 2])], values: values))
        let crow = try Tensor(dtype: .int64, shape: [3], bytes: [0, 1, 2].flatMap { withUnsafeBytes(of: Int64($0).littleEndian, Array.init) })
        let col = try Tensor(dtype: .int64, shape: [2], bytes: [0, 1].flatMap { withUnsafeBytes(of: Int64($0).littleEndian, Array.init) })
        XCTAssertNoThrow(try SparseTensor(layout: .csr, size: [2, 4], indices: [crow, col], values: values))
        XCTAssertThrowsError(try SparseTensor(layout: .csr, size: [3, 4], indices: [crow, col], values: values))
        // in bounds: 1 < 4; out of bounds on a smaller size
        XCTAssertNoThrow(try SparseTensor(layout: .csr, size: [2, 4], indices: [crow, col], values: values).validate())
        XCTAssertThrowsError(try SparseTensor(layout: .csr, size: [2, 1], indices: [crow, col], values: values).validate())
    }
}
