import CkptTensor

/// Opens any checkpoint ckpt understands, telling the format from its leading bytes exactly as
/// torch does (zip magic at offset 0, then tar, then the legacy magic pickle), then safetensors.
/// Counterpart: `torch.load(path, weights_only=True)` plus `safetensors.torch.load_file`.
public enum CheckpointReader {
    /// Reads the checkpoint at `path`; tensor data is mapped, not read. A file too large for the
    /// address space ckpt may use is opened unmapped: its structure (zip directory, safetensors
    /// header, the pickles and record headers of a legacy or tar stream) is then read with `pread`
    /// or in small windows, and each record mapped alone when its bytes are needed.
    /// - Throws: `FormatError` naming the file, member and offset of what is wrong; `.io` (never
    ///   a format error) when what is needed cannot be mapped.
    public static func read(path: String, options: UnpickleOptions = UnpickleOptions()) throws -> Checkpoint {
        let region: ByteRegion
        do {
            region = try ByteRegion.open(path: path)
        } catch let e as TensorError {
            if case let .io(_, m) = e { throw FormatError(.io, file: path, m) }
            throw FormatError(.io, file: path, "\(e)")
        }
        return try read(region: region, file: path, options: options)
    }

    /// Reads a checkpoint held in `region`; `file` names it in errors.
    /// - Throws: `FormatError`.
    public static func read(region: ByteRegion, file: String, options: UnpickleOptions = UnpickleOptions()) throws -> Checkpoint {
        // the leading bytes tell the format; a region not mapped whole gives them by pread
        let head: ByteRegion
        do {
            head = region.isMapped ? region : try region.copy(offset: 0, count: min(region.count, 4096))
        } catch {
            throw FormatError(.io, file: file, "\(error)")
        }
        let b = head.bytes
        defer { withExtendedLifetime(head) {} }
        switch detect(prefix: b, fileSize: region.count) {
        case .zip: return try TorchZipReader.read(try ZipArchive(region: region, file: file, maxInflatedSize: options.maxInflatedRecordSize), options: options)
        case .tar: return try TarReader.read(region, file: file, options: options)
        case .legacy: return try LegacyReader.read(region, file: file, options: options)
        case .safetensors: return try Safetensors.read(region, file: file)
        case .torchscript:
            throw FormatError(.unsupported, file: file, offset: 0, "TorchScript preview format (PYTORCH1), which torch itself no longer reads")
        case nil:
            if b.isEmpty { throw FormatError(.truncated, file: file, "empty file") }
            if b.count >= 8, b[0] == 0x89, b[1] == 0x50, b[2] == 0x4E, b[3] == 0x47 {
                throw FormatError(.corrupt, file: file, offset: 0, "this is a PNG image, not a checkpoint")
            }
            let code = PlainPickle.globals(in: region, file: file).filter { !Allowlist.contains($0) }
            if !code.isEmpty {
                throw FormatError(.refused, file: file, offset: 0, "not a torch.save file but a plain pickle referencing \(code.map(\.description).joined(separator: ", ")), which torch.load(weights_only=False) calls before it checks the magic number")
            }
            if b[0] == 0x80 {
                throw FormatError(.corrupt, file: file, offset: 0, "a plain pickle without torch's magic number: not a torch.save file")
            }
            throw FormatError(.corrupt, file: file, offset: 0, "not a checkpoint: no zip, tar, legacy torch or safetensors signature")
        }
    }

    /// The container format the leading bytes announce (`.torchscript` here means the refused
    /// `PYTORCH1` preview format), or nil when none matches.
    public static func detect(_ b: UnsafeRawBufferPointer) -> CheckpointFormat? {
        detect(prefix: b, fileSize: b.count)
    }

    /// As `detect(_:)` from the first bytes of a file of `fileSize` bytes (4 KiB are plenty).
    public static func detect(prefix b: UnsafeRawBufferPointer, fileSize: Int) -> CheckpointFormat? {
        if b.count >= 4, b[0] == 0x50, b[1] == 0x4B, b[2] == 3, b[3] == 4 { return .zip }
        if b.count >= 8, Array(b[0 ..< 8]) == Array("PYTORCH1".utf8) { return .torchscript }
        if TarReader.looksTar(b) { return .tar }
        if LegacyReader.looksLegacy(b) { return .legacy }
        if Safetensors.looksLikeSafetensors(prefix: b, fileSize: fileSize) { return .safetensors }
        return nil
    }
}
