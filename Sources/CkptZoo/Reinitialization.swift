import CkptKernels
import Dispatch
import CkptNN
import CkptTensor

extension Zoo {
    /// The model with every weight shaped but unallocated: answers questions about keys and
    /// modules, and runs once every module it runs has been loaded.
    /// - Throws: as `make`.
    public static func makeUnallocated(_ name: String, numClasses: Int? = nil) throws -> Module {
        let e = try entry(named: name)
        let n = numClasses ?? e.defaultClassCount
        guard n >= 1 else { throw ZooError.invalidClassCount(n) }
        var rng = SeededGenerator.specOnly
        let model = e.build(n, true, &rng)
        model.setTraining(false)
        return model
    }

    /// The keys whose shape depends on the class count: the classifier head (`fc.*`,
    /// `classifier.6.*`, segnet's last decoder convolution and its batch norm).
    /// - Throws: as `specification`.
    public static func headKeys(_ name: String, numClasses: Int? = nil) throws -> [String] {
        let n = try numClasses ?? entry(named: name).defaultClassCount
        let a = try specification(name, numClasses: n).parameterSpecs
        let b = try specification(name, numClasses: n + 1).parameterSpecs
        let heads = Set(zip(a, b).filter { $0.shape != $1.shape }.map { StateDict.modulePath(of: $0.0.key) })
        // the whole module: a batch norm's num_batches_tracked goes with it
        return a.filter { heads.contains($0.modulePath) }.map(\.key)
    }

    /// Fresh values for `keys`, initialised as `name`'s constructor initialises them (torchvision's
    /// rules; PyTorch's layer defaults where torchvision keeps them). Each module draws from its
    /// own stream, seeded by `seed` and its path, so a value does not depend on which other keys
    /// are asked for. Keys that name one shared parameter get one tensor (one storage).
    /// - Throws: `ZooError`, or `TensorError` only for impossible shapes.
    public static func initialValues(_ name: String, numClasses: Int? = nil, seed: UInt64, keys: [String]) throws -> [String: Tensor] {
        let e = try entry(named: name)
        let model = try makeUnallocated(name, numClasses: numClasses)
        let wanted = Set(keys)
        let modules = Set(keys.map { StateDict.modulePath(of: $0) })
        var done = Set<ObjectIdentifier>()
        var work: [(path: String, module: Module)] = []
        for (path, m) in model.namedModules() where modules.contains(path) && done.insert(ObjectIdentifier(m)).inserted {
            work.append((path, m))
        }
        // modules are independent (own parameters, own stream): both cores; each module's values
        // become tensors at once and the float arrays are dropped, so memory holds one copy
        let items = UncheckedSendable(work)
        let style = e.initialization
        let results = UncheckedSendable(UnsafeMutableBufferPointer<[(ObjectIdentifier, Tensor)]>.allocate(capacity: work.count))
        results.value.initialize(repeating: [])
        defer { results.value.deallocate() }
        let failure = UncheckedSendable(UnsafeMutablePointer<Error?>.allocate(capacity: 1))
        failure.value.initialize(to: nil)
        defer { failure.value.deallocate() }
        parallelFor(work.count) { i in
            let m = items.value[i].module
            var rng = SeededGenerator(seed: seed ^ fnv1a(items.value[i].path))
            initialize(m, style: style, rng: &rng)
            do {
                results.value[i] = try m.ownParameters.map { (ObjectIdentifier($0.parameter), try $0.parameter.exportedTensor()) }
            } catch {
                failure.value.pointee = error
            }
            for (_, p) in m.ownParameters { p.value = DenseTensor(placeholderShape: p.value.shape) }
        }
        if let e = failure.value.pointee { throw e }
        var exported: [ObjectIdentifier: Tensor] = [:]
        for r in results.value { for (id, t) in r { exported[id] = t } }
        var out: [String: Tensor] = [:]
        for (key, p) in model.namedParameters() where wanted.contains(key) {
            out[key] = exported[ObjectIdentifier(p)]
        }
        return out
    }

    /// One module's own parameters, as its constructor's rules set them.
    static func initialize(_ m: Module, style: InitializationStyle, rng: inout SeededGenerator) {
        switch m {
        case let c as Conv2d:
            let shape = c.weight.value.shape
            if case .torchvision = style {
                c.weight.value = Initialization.kaimingNormal(shape, mode: .fanOut, using: &rng)
                if let b = c.bias { b.value = DenseTensor(shape: b.value.shape) }
            } else {
                c.weight.value = Initialization.defaultWeight(shape, using: &rng)
                if let b = c.bias { b.value = Initialization.defaultBias(b.value.shape[0], weightShape: shape, using: &rng) }
            }
        case let c as ConvTranspose2d:
            let shape = c.weight.value.shape
            c.weight.value = Initialization.defaultWeight(shape, using: &rng)
            if let b = c.bias { b.value = Initialization.defaultBias(b.value.shape[0], weightShape: shape, using: &rng) }
        case let bn as BatchNorm2d:
            let n = bn.weight.value.shape
            bn.weight.value = DenseTensor(shape: n, repeating: 1)
            bn.bias.value = DenseTensor(shape: n)
            bn.runningMean.value = DenseTensor(shape: n)
            bn.runningVariance.value = DenseTensor(shape: n, repeating: 1)
            bn.batchesTracked.value = DenseTensor(shape: [])
        case let l as Linear:
            let shape = l.weight.value.shape
            if case let .torchvision(.normal(std)) = style {
                l.weight.value = Initialization.normal(shape, std: std, using: &rng)
                if let b = l.bias { b.value = DenseTensor(shape: b.value.shape) }
            } else {
                l.weight.value = Initialization.defaultWeight(shape, using: &rng)
                if let b = l.bias { b.value = Initialization.defaultBias(b.value.shape[0], weightShape: shape, using: &rng) }
            }
        default:
            for (_, p) in m.ownParameters { p.value = DenseTensor(shape: p.value.shape) }
        }
    }

    /// FNV-1a of a module path: per-module seeds.
    static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}
