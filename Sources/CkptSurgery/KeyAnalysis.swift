import CkptTensor

/// The state dict found inside a checkpoint: where it sits, which wrapper prefix its keys carry,
/// and its tensors keyed as a torch user would load them.
public struct LocatedStateDict: Sendable {
    /// Dotted path of the dict inside the checkpoint (`""` for a bare state dict, `model`).
    public var rootPath: String
    /// Prefix every key carries that `load_state_dict` would not expect (`module.`, `_orig_mod.`).
    public var wrapperPrefix: String?
    /// Keys without the root path, in file order (wrapper prefix still on).
    public var raw: StateDict
    /// True when the state dict was rebuilt from a whole pickled `nn.Module`.
    public var isPickledModule = false
    /// True when the file is an optimizer's `state_dict()` (`state` and `param_groups`): no model
    /// weights at all.
    public var isOptimizerState = false

    /// A located state dict.
    public init(rootPath: String, wrapperPrefix: String?, raw: StateDict, isPickledModule: Bool = false) {
        self.rootPath = rootPath
        self.wrapperPrefix = wrapperPrefix
        self.raw = raw
        self.isPickledModule = isPickledModule
    }

    /// The state dict as `load_state_dict` wants it: the wrapper prefix removed.
    public var stateDict: StateDict {
        wrapperPrefix.map { raw.removingPrefix($0) } ?? raw
    }

    /// The keys with the wrapper prefix removed.
    public var unwrappedKeys: [String] { stateDict.keys }
}

/// What the keys say about the architecture (`torchvision resnet34, 1000 classes, 3 input channels`).
public struct ArchitectureGuess: Sendable, Equatable {
    /// Model name as torchvision spells it (`resnet34`, `vgg19_bn`).
    public var name: String
    /// Width of the final classifier layer, when there is one.
    public var numClasses: Int?
    /// Input channels of the first convolution.
    public var inputChannels: Int?

    /// `resnet34, 1000 classes, 3 input channels`.
    public var summary: String {
        var parts = [name]
        if let n = numClasses { parts.append("\(n) classes") }
        if let c = inputChannels { parts.append("\(c) input channel" + (c == 1 ? "" : "s")) }
        return parts.joined(separator: ", ")
    }
}

/// Reading a checkpoint's keys: where the state dict is, wrapper prefixes, parameters vs
/// buffers, and which torchvision architecture the keys and shapes describe.
public enum KeyAnalysis {
    /// Names under which training scripts nest the model's state dict, most likely first.
    public static let stateDictNames = ["state_dict", "model_state_dict", "model", "net", "network",
                                        "model_state", "weights", "params", "module", "ema", "model_ema", "state_dict_ema"]

    /// Names of checkpoint entries that hold tensors but are not the model's state dict.
    public static let notStateDictNames: Set<String> = ["optimizer", "optimizer_state_dict", "optim", "scheduler",
                                                        "lr_scheduler", "scaler", "amp", "grad_scaler"]

    /// Key prefixes wrappers add: DataParallel/DDP (`module.`) and `torch.compile` (`_orig_mod.`).
    /// (`model.` is left alone: it is as often a real submodule name as a Lightning wrapper.)
    public static let wrapperPrefixes = ["module.", "_orig_mod."]

    /// True for the buffers torch keeps beside parameters (BatchNorm running statistics).
    public static func isBuffer(_ key: String) -> Bool {
        key.hasSuffix("running_mean") || key.hasSuffix("running_var") || key.hasSuffix("num_batches_tracked")
    }

    /// What a state dict's tensor is to its module. A state dict does not record it (torch saves
    /// parameters and buffers alike as plain tensors), so it is read off what is known: a tensor
    /// pickled as `nn.Parameter` is one; BatchNorm's running statistics are buffers; so is every
    /// tensor whose dtype cannot require a gradient (integer and bool tensors: token ids, masks,
    /// counters — torch refuses `nn.Parameter` of them); and a quantized module's `scale` and
    /// `zero_point` (one element, beside a quantized tensor or a `zero_point` of the same module).
    /// `tensorNamed` looks up another key of the same state dict.
    public static func role(of key: String, _ tensor: Tensor, tensorNamed: (String) -> Tensor?) -> ParameterRole {
        if tensor.isParameter { return .parameter }
        if isBuffer(key) { return .buffer }
        let dtype = tensor.dtype
        if !dtype.isFloatingPoint, !dtype.isComplex, !dtype.isQuantized { return .buffer }
        if tensor.elementCount == 1, isQuantizationParameter(key, tensorNamed: tensorNamed) { return .buffer }
        return .parameter
    }

    /// True for `<module>.scale` beside a quantized `<module>.weight` or a `<module>.zero_point`
    /// (a quantized Linear/Conv's output scale, a QuantStub's `quant.scale`).
    private static func isQuantizationParameter(_ key: String, tensorNamed: (String) -> Tensor?) -> Bool {
        let (module, name) = key.lastIndex(of: ".").map { (String(key[...$0]), String(key[key.index(after: $0)...])) } ?? ("", key)
        guard name == "scale" else { return false }
        if tensorNamed(module + "zero_point") != nil { return true }
        return tensorNamed(module + "weight")?.dtype.isQuantized ?? false
    }

    /// The PyTorch Lightning version a Lightning checkpoint names (`pytorch-lightning_version`),
    /// `""` for a Lightning-shaped checkpoint without it, nil for any other.
    public static func lightningVersion(_ checkpoint: Checkpoint) -> String? {
        guard let d = checkpoint.root.dictValue else { return nil }
        if case let .string(v)? = d["pytorch-lightning_version"] { return v }
        let keys = Set(d.items.compactMap { $0.key.stringValue })
        if keys.contains("state_dict"), keys.contains("loops") || keys.contains("optimizer_states") { return "" }
        return nil
    }

    /// Finds the state dict inside `checkpoint`: the root itself when its values are tensors,
    /// else the nested dict with the most tensors (a known name wins ties). In a Lightning
    /// checkpoint, a `model.` every key carries (a LightningModule's `self.model`) counts as a
    /// wrapper prefix.
    public static func locateStateDict(_ checkpoint: Checkpoint) -> LocatedStateDict {
        var located = locateNested(checkpoint)
        if located.wrapperPrefix == nil, lightningVersion(checkpoint) != nil, located.rootPath == "state_dict",
           !located.raw.isEmpty, located.raw.allSatisfy({ $0.key.hasPrefix("model.") }) {
            located.wrapperPrefix = "model."
        }
        return located
    }

    private static func locateNested(_ checkpoint: Checkpoint) -> LocatedStateDict {
        var path = ""
        var node = checkpoint.root
        if let d = node.dictValue, !d.items.isEmpty, Set(d.items.compactMap { $0.key.stringValue }) == ["state", "param_groups"] {
            var located = LocatedStateDict(rootPath: "", wrapperPrefix: nil, raw: StateDict([]))
            located.isOptimizerState = true
            return located
        }
        for _ in 0 ..< 4 {
            if let sd = Salvage.moduleStateDict(node) {
                // a whole pickled nn.Module: its state_dict() keys
                return LocatedStateDict(rootPath: path, wrapperPrefix: nil, raw: StateDict(sd), isPickledModule: true)
            }
            guard let d = node.dictValue else { break }
            if d.items.contains(where: { $0.value.tensorValue != nil }) {
                // scalar tensors beside a named state dict (`best_acc = tensor(0.75)`) are
                // metrics, not the model: the named child still holds the weights
                let scalarsOnly = d.items.allSatisfy { $0.value.tensorValue.map { $0.elementCount <= 1 } ?? true }
                let named = d.items.contains { stateDictNames.contains($0.key.stringValue ?? "") && tensorCount($0.value) > 0 }
                guard scalarsOnly, named else { break }
            }
            // a known state-dict name wins (earlier in the list first); otherwise the child with
            // the most tensors, never an optimizer's or scheduler's state
            var best: (name: String, value: Value, count: Int, rank: Int)?
            for (k, v) in d.items {
                guard let name = k.stringValue, !notStateDictNames.contains(name) else { continue }
                let n = tensorCount(v)
                guard n > 0, v.tensorValue == nil else { continue }
                let rank = stateDictNames.firstIndex(of: name).map { stateDictNames.count - $0 } ?? 0
                if let b = best {
                    if rank > b.rank || (rank == b.rank && n > b.count) { best = (name, v, n, rank) }
                } else {
                    best = (name, v, n, rank)
                }
            }
            guard let b = best else { break }
            path = path.isEmpty ? b.name : path + "." + b.name
            node = b.value
        }
        var entries: [(key: String, tensor: Tensor)] = []
        Checkpoint.walk(node, path: "") { p, v in
            if case let .tensor(t) = v { entries.append((p, t)) }
        }
        let keys = entries.map(\.key)
        let prefix = wrapperPrefixes.first { p in !keys.isEmpty && keys.allSatisfy { $0.hasPrefix(p) } }
        return LocatedStateDict(rootPath: path, wrapperPrefix: prefix, raw: StateDict(entries), isPickledModule: false)
    }

    /// The state dict at the dotted path `key` of `checkpoint` (`--key model`), or nil when no
    /// tensors sit there.
    public static func locateStateDict(_ checkpoint: Checkpoint, at key: String) -> LocatedStateDict? {
        var entries: [(key: String, tensor: Tensor)] = []
        let prefix = key + "."
        for (p, t) in checkpoint.tensors where p == key || p.hasPrefix(prefix) {
            entries.append((p == key ? "" : String(p.dropFirst(prefix.count)), t))
        }
        guard !entries.isEmpty else { return nil }
        let keys = entries.map(\.key)
        let wrapper = wrapperPrefixes.first { p in keys.allSatisfy { $0.hasPrefix(p) } }
        return LocatedStateDict(rootPath: key, wrapperPrefix: wrapper, raw: StateDict(entries))
    }

    private static func tensorCount(_ v: Value) -> Int {
        var n = 0
        Checkpoint.walk(v, path: "") { _, x in if case .tensor = x { n += 1 } }
        return n
    }

    /// The torchvision architecture the keys and shapes describe, if any.
    public static func guessArchitecture(_ keyed: [(key: String, shape: [Int])]) -> ArchitectureGuess? {
        var shapes: [String: [Int]] = [:]
        for (k, s) in keyed { shapes[k] = s }
        func dim(_ k: String, _ i: Int) -> Int? {
            guard let s = shapes[k], i < s.count else { return nil }
            return s[i]
        }
        // ResNet family: conv1, layer1..4, fc
        if shapes["conv1.weight"] != nil, shapes["fc.weight"] != nil, shapes["layer1.0.conv1.weight"] != nil {
            let blocks = (1 ... 4).map { l in Set(keyed.compactMap { indexAfter("layer\(l).", in: $0.key) }).count }
            let bottleneck = shapes["layer1.0.conv3.weight"] != nil
            let depth: Int?
            switch (blocks, bottleneck) {
            case ([2, 2, 2, 2], false): depth = 18
            case ([3, 4, 6, 3], false): depth = 34
            case ([3, 4, 6, 3], true): depth = 50
            case ([3, 4, 23, 3], true): depth = 101
            case ([3, 8, 36, 3], true): depth = 152
            default: depth = nil
            }
            var name = depth.map { "resnet\($0)" } ?? "resnet (blocks \(blocks.map(String.init).joined(separator: ",")))"
            if bottleneck, let d = depth, let width = dim("layer1.0.conv2.weight", 0), let perGroup = dim("layer1.0.conv2.weight", 1), perGroup > 0 {
                let groups = width / perGroup
                if groups > 1 {
                    name = "resnext\(d)_\(groups)x\(perGroup)d"
                } else if width > 64 {
                    name = "wide_resnet\(d)_\(width / 64)"
                }
            }
            return ArchitectureGuess(name: name, numClasses: dim("fc.weight", 0), inputChannels: dim("conv1.weight", 1))
        }
        // SegNet: enc1..enc5 / dec1..dec5
        if keyed.contains(where: { $0.key.hasPrefix("enc1.") }), keyed.contains(where: { $0.key.hasPrefix("dec1.") }) {
            let last = keyed.last { $0.key.hasPrefix("dec1.") && $0.key.hasSuffix(".weight") && $0.shape.count == 4 }
            let first = keyed.first { $0.shape.count == 4 }
            return ArchitectureGuess(name: "segnet", numClasses: last.map { $0.shape[0] }, inputChannels: first.map { $0.shape[1] })
        }
        // VGG and AlexNet: features.N + classifier.N
        let convs = keyed.filter { $0.key.hasPrefix("features.") && $0.key.hasSuffix(".weight") && $0.shape.count == 4 }
        let classifier = keyed.filter { $0.key.hasPrefix("classifier.") && $0.key.hasSuffix(".weight") && $0.shape.count == 2 }
        if !convs.isEmpty, !classifier.isEmpty {
            let bn = keyed.contains { $0.key.hasPrefix("features.") && $0.key.hasSuffix("running_mean") }
            let numClasses = classifier.last.map { $0.shape[0] }
            let inputChannels = convs.first.map { $0.shape[1] }
            if convs.count == 5, convs.first?.shape.suffix(2) == [11, 11] {
                return ArchitectureGuess(name: "alexnet", numClasses: numClasses, inputChannels: inputChannels)
            }
            let depth: [Int: Int] = [8: 11, 10: 13, 13: 16, 16: 19]
            if let d = depth[convs.count] {
                return ArchitectureGuess(name: "vgg\(d)" + (bn ? "_bn" : ""), numClasses: numClasses, inputChannels: inputChannels)
            }
        }
        return nil
    }

    /// The integer after `prefix` in `key` (`layer2.` in `layer2.3.conv1.weight` → 3).
    static func indexAfter(_ prefix: String, in key: String) -> Int? {
        guard key.hasPrefix(prefix) else { return nil }
        return Int(key.dropFirst(prefix.count).prefix { $0 != "." })
    }
}
