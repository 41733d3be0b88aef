import CkptTensor

/// What a file that is no torch.save container would make torch run. `torch.load` reads a file
/// that is neither zip nor tar as the legacy stream, whose first item is a pickle of the magic
/// number: with `weights_only=False` that first pickle runs whole, with its globals called,
/// before torch compares the result with the magic number. A plain `pickle.dump` file renamed
/// `.pth` is therefore code to torch, and ckpt names what it references instead of calling it
/// merely "not a checkpoint".
public enum PlainPickle {
    /// Bytes of a file that is not mapped whole which are walked (a pickle's globals come
    /// before the data they are applied to; a longer pickle is walked up to here).
    static let window = 16 << 20

    /// Every global the pickle at the start of `region` references, first-seen order, up to the
    /// pickle's end or the first opcode that breaks it; walked inert (salvage), nothing called.
    /// Empty when the bytes are not a pickle at all.
    static func globals(in region: ByteRegion, file: String) -> [QualifiedName] {
        guard let part = try? region.isMapped ? region : region.copy(offset: 0, count: min(region.count, window)) else { return [] }
        return withExtendedLifetime(part) {
            let u = Unpickler(bytes: part.bytes, file: file, member: "pickle", options: UnpickleOptions(salvage: true),
                              persistentLoad: { _ in .object(OpaqueObject(global: QualifiedName("torch", "persistent_load"), construction: .reference)) })
            _ = try? u.run()
            return u.globals
        }
    }

    /// As `globals(in:file:)` for the file at `path`; nil when the file cannot be opened or is a
    /// container ckpt reads (zip, tar, legacy stream, safetensors), whose pickles the reader walks.
    public static func globals(path: String) -> [QualifiedName]? {
        guard let region = try? ByteRegion.open(path: path) else { return nil }
        let prefix = region.isMapped ? region : try? region.copy(offset: 0, count: min(region.count, 4096))
        guard let head = prefix, region.count > 0 else { return nil }
        let detected = withExtendedLifetime(head) { CheckpointReader.detect(prefix: head.bytes, fileSize: region.count) }
        return detected == nil ? globals(in: region, file: path) : nil
    }
}
