import CkptTensor

/// Writes checkpoints: the zip `.pth` form `torch.load(path, weights_only=True)` reads back
/// bit-identically, or safetensors. Output goes to a temporary file renamed into place.
/// Counterpart: `torch.save(obj, path)` and `safetensors.torch.save_file`.
public enum CheckpointWriter {
    /// The formats ckpt writes.
    public enum OutputFormat: String, Sendable {
        case pth, safetensors
    }

    /// The output format `path`'s extension asks for (`.safetensors` → safetensors, else pth).
    public static func format(forPath path: String) -> OutputFormat {
        path.lowercased().hasSuffix(".safetensors") ? .safetensors : .pth
    }

    /// The archive folder torch would use for `path`: its basename without the last extension,
    /// or `archive` when that is empty or not ASCII (`torch.serialization._save`).
    public static func archivePrefix(forPath path: String) -> String {
        let base = path.split(separator: "/").last.map(String.init) ?? path
        var stem = base
        if let dot = base.lastIndex(of: ".") { stem = String(base[..<dot]) }
        if stem.isEmpty || !stem.allSatisfy({ $0.isASCII }) { return "archive" }
        return stem
    }

    /// Writes `checkpoint` to `path` in the format its extension names.
    /// - Throws: `FormatError` for values the format cannot hold, or I/O failures; nothing is
    ///   left at `path` unless the whole file was written.
    public static func write(_ checkpoint: Checkpoint, to path: String, forbidding inputs: [String] = [],
                             progress: ((Int, Int) -> Void)? = nil) throws {
        switch format(forPath: path) {
        case .pth: try writeTorchZip(checkpoint, to: path, forbidding: inputs, progress: progress)
        case .safetensors:
            if let (p, summary, kind) = checkpoint.firstNonDenseTensor {
                throw FormatError(.unsupported, file: path, "'\(p)' is \(kind) (\(summary)); safetensors holds only dense tensors with values (write .pth)")
            }
            var metadata: [(String, String)] = checkpoint.info.metadata.map { ($0.key, $0.value) }
            if !metadata.contains(where: { $0.0 == "format" }) { metadata.append(("format", "pt")) }
            try SafetensorsWriter.write(checkpoint.tensors.map { (name: $0.path, tensor: $0.tensor) }, metadata: metadata, to: path,
                                        forbidding: inputs, progress: progress)
        }
    }

    /// Writes the zip form torch ≥ 1.6 writes: `data.pkl`, `byteorder`, `data/0..N-1`, `version`.
    /// - Throws: `FormatError`.
    public static func writeTorchZip(_ checkpoint: Checkpoint, to path: String, forbidding inputs: [String] = [],
                                     progress: ((Int, Int) -> Void)? = nil) throws {
        try writeTorchZip(checkpoint, to: path, forbidding: inputs, progress: progress, zip64Threshold: 0xFFFF_FFFF)
    }

    /// As above; `zip64Threshold` lowers the 4 GiB point where zip64 fields start (for tests).
    static func writeTorchZip(_ checkpoint: Checkpoint, to path: String, forbidding inputs: [String],
                              progress: ((Int, Int) -> Void)?, zip64Threshold: Int) throws {
        var pickler = Pickler(file: path)
        pickler.prepare(checkpoint.root)
        try pickler.value(checkpoint.root, path: "")
        pickler.finish()
        let prefix = archivePrefix(forPath: path)
        let out = try AtomicFileWriter(destination: path, forbidding: inputs)
        do {
            let zip = ZipWriter(out, file: path, zip64Threshold: zip64Threshold)
            try zip.addRecord(prefix + "/data.pkl", bytes: pickler.out)
            try zip.addRecord(prefix + "/byteorder", bytes: Array("little".utf8))
            let total = pickler.storages.reduce(0) { $0 + $1.byteCount }
            var done = 0
            for (i, s) in pickler.storages.enumerated() {
                // each storage streams into its record chunk by chunk (pread from the input, a
                // cast computed per chunk); one this call had to load (an inflated record) is
                // dropped once written, so memory holds one storage at most, never all of them
                let loadedBefore = s.isLoaded
                do {
                    try zip.addRecord(prefix + "/data/\(i)", size: s.byteCount) { write in
                        try s.forEachLittleEndianChunk { try write($0) }
                    }
                } catch let e as TensorError {
                    throw FormatError(.corrupt, file: path, member: "storage \(s.key)", "\(e)")
                }
                if !loadedBefore { s.evict() }
                done += s.byteCount
                progress?(done, total)
            }
            try zip.addRecord(prefix + "/version", bytes: Array("3\n".utf8))
            try zip.finish()
            try out.commit()
        } catch {
            out.abort()
            throw error
        }
    }
}
