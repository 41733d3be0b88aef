import CkptTensor
import Foundation

/// Reads `torch.save` zip archives (torch ≥ 1.6) and TorchScript archives: finds the archive
/// prefix, checks `version` and `byteorder`, runs `data.pkl` through the restricted unpickler and
/// resolves storages to `<prefix>/data/<key>` records, memory-mapped when stored.
/// Counterpart: `torch.serialization._load` over `PyTorchFileReader`.
enum TorchZipReader {
    static func read(_ archive: ZipArchive, options: UnpickleOptions) throws -> Checkpoint {
        let file = archive.file
        var info = FormatInfo(format: .zip)
        let prefix = try findPrefix(archive)
        info.archivePrefix = prefix
        func record(_ name: String) -> ZipEntry? { archive.entry(named: prefix + "/" + name) }

        // other torch zip variants ckpt recognises but does not read
        if archive.entry(named: prefix + "/.data/extern_modules") != nil || archive.entries.contains(where: { $0.name.hasSuffix(".storage") && $0.name.contains("/.data/") }) {
            throw FormatError(.unsupported, file: file, member: prefix + "/.data", "torch.package archive (ckpt reads torch.save checkpoints and TorchScript weights)")
        }
        // as torch decides (`_is_torchscript_zip`): a `constants.pkl` record, nothing else; a `code/`
        // folder alone leaves the archive an ordinary checkpoint, read under the ordinary rules
        let isScript = record("constants.pkl") != nil
        // where a compiled class's TorchScript source sits (`__torch__.a.b.C` in `code/__torch__/a/b.py`)
        func codePath(_ g: QualifiedName) -> String { prefix + "/code/" + g.module.split(separator: ".").joined(separator: "/") + ".py" }
        if isScript { info.format = .torchscript }

        let strays = archive.entries.filter { !$0.name.hasPrefix(prefix + "/") && !$0.isDirectory }
        if let s = strays.first { info.warnings.append("entry '\(s.name)' lies outside the archive folder '\(prefix)/' (torch refuses such archives)") }

        if let v = record(".data/version") ?? record("version") {
            let text = String(decoding: try archive.read(v).copyPrefix(32), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if let n = Int(text) {
                info.archiveVersion = n
                if n < 1 || n > 10 { info.warnings.append("archive version \(n) is outside 1...10 (torch refuses it)") }
            } else {
                info.warnings.append("archive version record is not a number")
            }
        } else {
            info.warnings.append("no 'version' record (torch refuses such archives)")
        }
        if let bo = record("byteorder") {
            let text = String(decoding: try archive.read(bo).copyPrefix(16), as: UTF8.self)
            switch text {
            case "little": info.byteOrder = .little
            case "big": info.byteOrder = .big
            default: throw FormatError(.corrupt, file: file, member: bo.name, "byteorder is '\(text.prefix(16))', expected 'little' or 'big'")
            }
        }

        guard let pkl = record("data.pkl") else {
            throw FormatError(.corrupt, file: file, member: prefix + "/data.pkl", "missing record")
        }
        let pklBytes = try archive.read(pkl)
        // torch does not check CRCs, but the pickle is the attack surface and small: a mismatch
        // means corruption or tampering (a CRC of 0 means the writer turned CRCs off)
        let actualCRC = try mapped(pklBytes, file: file, member: pkl.name) { ZipArchive.crc32($0) }
        if pkl.crc32 != 0, pkl.method == 0, actualCRC != pkl.crc32 {
            throw FormatError(.corrupt, file: file, member: pkl.name, "crc-32 mismatch: the central directory says \(String(pkl.crc32, radix: 16)), the bytes give \(String(actualCRC, radix: 16))")
        }
        let dataFolder = prefix + "/data/"
        // one loader for every record: a storage keeps the record's index, not a closure of its own
        let records = RecordLoader { try archive.read(archive.entries[$0]) }
        let table = StorageTable(file: file, member: pkl.name, byteOrder: info.byteOrder) { key, _, bytes in
            guard let e = archive.entry(named: dataFolder + key) else {
                throw FormatError(.corrupt, file: file, member: dataFolder + key, "missing storage record")
            }
            guard e.size == bytes else {
                throw FormatError(.corrupt, file: file, member: e.name, "record holds \(e.size) bytes, the pickle declares \(bytes)")
            }
            if e.method != 0 { info.warnings.append("storage record \(e.name) is compressed (torch's mmap loader reads garbage from it)") }
            return .record(records, e.index)
        }
        var opts = options
        if isScript { opts.salvage = true }
        let root = try mapped(pklBytes, file: file, member: pkl.name) { raw -> (Value, Unpickler) in
            let u = Unpickler(bytes: raw, file: file, member: pkl.name, options: opts, persistentLoad: table.loadZipPID)
            return (try u.run(), u)
        }
        let u = root.1
        info.record(u)
        if isScript { info.disallowedGlobals = u.disallowed.filter { !TorchZipReader.scriptTolerated($0) } }
        if isScript {
            // what torch.jit.load would fail on: a data.pkl that is not a scripted module, or a
            // module class with no compiled code in the archive
            guard case let .object(o) = root.0, o.global.module.hasPrefix("__torch__") else {
                throw FormatError(.corrupt, file: file, member: pkl.name, "TorchScript archive whose data.pkl holds a \(root.0.typeName), not a scripted module (torch.jit.load fails on it)")
            }
            for g in u.globals where TorchZipReader.scriptTolerated(g) && g.module.hasPrefix("__torch__") {
                if archive.entry(named: codePath(g)) == nil {
                    throw FormatError(.corrupt, file: file, member: codePath(g), "TorchScript class \(g) has no compiled code in the archive (torch.jit.load fails on it)")
                }
            }
        }
        var root0 = root.0
        if isScript {
            // torch.jit.load's state_dict(): registered parameters and buffers only
            var classes: [String: [String: Set<String>]] = [:]
            func declared(_ g: QualifiedName) -> Set<String>? {
                guard g.module.hasPrefix("__torch__") else { return nil }
                if classes[g.module] == nil {
                    var table: [String: Set<String>] = [:]
                    if let e = archive.entry(named: codePath(g)), e.size <= 64 << 20,
                       let text = try? archive.read(e).withBytes({ String(decoding: $0, as: UTF8.self) }) {
                        table = ScriptModuleState.declarations(in: text)
                    }
                    classes[g.module] = table
                }
                return classes[g.module]?[g.name]
            }
            root0 = ScriptModuleState.prune(root0, declared: declared)
        }
        if isScript, !options.salvage, let bad = info.disallowedGlobals.first(where: { $0.module.hasPrefix("__torch__.torch.classes.") }) {
            throw FormatError(.refused, file: file, member: pkl.name, "global '\(bad)' is a bound C++ class (a quantized module's packed weights, say), which torch.jit.load rebuilds by running its C++ __setstate__; ckpt does not read such archives (use --salvage to list the other tensors)")
        }
        if isScript, !options.salvage, let bad = info.disallowedGlobals.first {
            throw FormatError(.refused, file: file, member: pkl.name, "global '\(bad)' is not allowed in a TorchScript archive (its data.pkl needs only the module's own __torch__ classes and torch.jit._pickle's list builders); use --salvage to keep it as an inert node")
        }
        try SparseValidation.check(root0, info: info, file: file, member: pkl.name)
        return Checkpoint(root: root0, info: info)
    }

    /// Globals a TorchScript archive's `data.pkl` may name beyond torch's weights-only allowlist:
    /// the module's own compiled classes (`__torch__.<module>.<Class>`, kept as inert objects and
    /// never called; each must have its compiled code in the archive, as torch.jit.load needs) —
    /// scripted torch modules included (`__torch__.torch.nn.modules.conv.Conv2d`, the submodules of
    /// every scripted torchvision model, quantization stubs, FX GraphModules) — and
    /// torch.jit._pickle's container builders. Not `torch.jit.*` in general, and not
    /// `__torch__.torch.classes.*` (bound C++ classes, whose `__setstate__` runs C++ code).
    static func scriptTolerated(_ g: QualifiedName) -> Bool {
        if g.module.hasPrefix("__torch__.") || g.module == "__torch__" {
            return !g.module.hasPrefix("__torch__.torch.classes.") && g.module != "__torch__.torch.classes"
        }
        return g.module == "torch.jit._pickle" && ["restore_type_tag", "build_intlist", "build_tensorlist", "build_doublelist",
                                                   "build_boollist", "build_tensor_from_id", "build_complexlist"].contains(g.name)
    }

    /// The archive folder: the one `X/data.pkl` entry whose path has exactly one `/`.
    static func findPrefix(_ archive: ZipArchive) throws -> String {
        let candidates = archive.entries.filter { e in
            e.name.hasSuffix("/data.pkl") && e.name.split(separator: "/", omittingEmptySubsequences: false).count == 2
        }
        guard let first = candidates.first else {
            if archive.entries.contains(where: { $0.name.hasSuffix("model.json") }) {
                throw FormatError(.unsupported, file: archive.file, member: "model.json", "TorchScript archive of the torch 1.0 era (model.json), which ckpt does not read")
            }
            throw FormatError(.corrupt, file: archive.file, member: "data.pkl", "zip archive has no '<folder>/data.pkl' record: not a torch checkpoint")
        }
        guard candidates.count == 1 else {
            throw FormatError(.refused, file: archive.file, member: candidates[1].name, "more than one data.pkl ('\(first.name)' and '\(candidates[1].name)')")
        }
        return String(first.name.dropLast("/data.pkl".count))
    }
}

/// Calls `body` with `slice`'s bytes, a window mapped first; "cannot map" is an I/O error
/// naming the record, never a format error.
func mapped<R>(_ slice: ByteSlice, file: String, member: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
    let bytes: UnsafeRawBufferPointer
    do {
        bytes = try slice.mappedBytes()
    } catch let e as TensorError {
        if case let .io(_, m) = e { throw FormatError(.io, file: file, member: member, m) }
        throw FormatError(.io, file: file, member: member, "\(e)")
    }
    return try withExtendedLifetime(slice) { try body(bytes) }
}

extension ByteSlice {
    /// A copy of the first `n` bytes, read without mapping anything.
    /// - Throws: `TensorError.io` when the file gives fewer bytes.
    func copyPrefix(_ n: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: min(n, count))
        try out.withUnsafeMutableBytes { try copy(into: $0) }
        return out
    }
}
