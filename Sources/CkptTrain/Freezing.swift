import CkptNN
import CkptZoo

/// Which parameters train: everything, only the named modules or parameters, or everything but
/// the named ones. Names are module paths (`layer4`, `classifier.0`) or state-dict keys
/// (`fc.weight`); a name covers every parameter at or below it.
/// PyTorch counterpart: `p.requires_grad_(False)` over the parameters a tutorial picks by name.
public enum TrainableSelection: Sendable, Equatable {
    /// Every parameter trains.
    case all
    /// Only parameters under these names train (`--train classifier.0,classifier.3`).
    case only([String])
    /// Every parameter trains except those under these names (`--freeze layer1,layer2`).
    case freeze([String])

    /// Sets `requiresGrad` on every parameter of `model` (buffers never train) and returns the
    /// keys that train, in state-dict order (shared parameters under each key).
    /// - Throws: `TrainingError.unknownName` with close matches for a name that covers nothing;
    ///   `TrainingError.nothingTrains` when the selection leaves nothing trainable.
    @discardableResult
    public func apply(to model: Module) throws -> [String] {
        let entries = model.namedParameters().filter { $0.parameter.role == .parameter }
        let option: String
        let names: [String]
        switch self {
        case .all:
            for e in entries { e.parameter.requiresGrad = true }
            return entries.map(\.key)
        case let .only(n): (option, names) = ("--train", n)
        case let .freeze(n): (option, names) = ("--freeze", n)
        }
        let modulePaths = model.namedModules().map(\.path).filter { !$0.isEmpty }
        for name in names {
            let covers = entries.contains { TrainableSelection.covers(name, $0.key) }
            if !covers {
                throw TrainingError.unknownName(name: name, option: option,
                                                closeMatches: TrainableSelection.closeMatches(name, modulePaths + entries.map(\.key)))
            }
        }
        // a shared parameter trains when any of its keys is selected (it is one tensor)
        var selected = Set<ObjectIdentifier>()
        for e in entries where names.contains(where: { TrainableSelection.covers($0, e.key) }) {
            selected.insert(ObjectIdentifier(e.parameter))
        }
        let onlyMode: Bool
        if case .only = self { onlyMode = true } else { onlyMode = false }
        for e in entries {
            let isSelected = selected.contains(ObjectIdentifier(e.parameter))
            e.parameter.requiresGrad = onlyMode ? isSelected : !isSelected
        }
        let trainable = entries.filter(\.parameter.requiresGrad).map(\.key)
        if trainable.isEmpty { throw TrainingError.nothingTrains(option: option) }
        return trainable
    }

    /// True when `name` is `key` or a module path above it.
    static func covers(_ name: String, _ key: String) -> Bool {
        key == name || key.hasPrefix(name + ".")
    }

    /// Names that extend `name` (`layer` → `layer1`, …) or are a small edit away from it.
    static func closeMatches(_ name: String, _ candidates: [String]) -> [String] {
        var seen = Set<String>()
        let unique = candidates.filter { seen.insert($0).inserted }
        let extending = unique.filter { $0.hasPrefix(name) && !$0.dropFirst(name.count).contains(".") }
        if !extending.isEmpty { return extending }
        if let close = Zoo.closestName(to: name, in: unique) { return [close] }
        return []
    }
}
