import ArgumentParser
import CkptFormat
import CkptNN
import CkptZoo
import Foundation

// Shapes follow PyTorch's NCHW layout: N images in a batch, C channels, H rows, W columns.

/// `ckpt summary MODEL`: a torchinfo-style table of every module call, then totals and sizes.
struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model's layers, output shapes and parameter counts, as torchinfo.summary does.",
        discussion: """
            Runs an eval-mode forward on zeros of the given input shape and lists every module call in the \
            order torchinfo lists it: a container before its children, each as `Type: depth-index` with its \
            dotted name (what `ckpt forward --layer` takes). Param # is given for leaves; a module called again \
            under another name is marked (shared) and counted once. Sizes are in MB of 2^20 bytes, as \
            torchsummary computes them: the forward/backward pass is 2 × 4 bytes per leaf output element.
            """)

    @OptionGroup var options: ModelOptions

    @Option(name: .long, help: "Input shape without the batch, one per model input joined by ',' (3x224x224, 1x160x160,1x160x160). Default: the zoo's.")
    var input: String?

    @Option(name: .long, help: "Batch size.")
    var batch = 1

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    func validate() throws {
        if let input { _ = try ModelShapes.parse(input) }
        if batch < 1 { throw ValidationError("--batch must be positive, got \(batch)") }
    }

    /// A row in torchinfo's order, with its `depth-index` label.
    struct Line {
        var row: ModelSummary.Row
        var index: Int
        var hasSharedParameters: Bool
    }

    func run() throws {
        try CLI.run {
            try CLI.prepareKernels()
            let entry = try options.entry()
            let model = try Zoo.make(entry.name, numClasses: options.numClasses, initialize: false)
            let shapes = try input.map { try ModelShapes.parse($0).map { [batch] + $0 } } ?? entry.inputShapes(batch: batch)
            let s = try model.summarize(inputShapes: shapes)
            let lines = Summary.preorder(s.rows).map { r, i in
                Line(row: r, index: i, hasSharedParameters: r.isRepeat && (model.submodule(at: r.path)?.parameterCount ?? 0) > 0)
            }
            let sharedModules = Summary.sharedModules(model)
            let classes = options.numClasses ?? entry.defaultClassCount
            if json {
                printJSON(s, lines, sharedModules, entry: entry, classes: classes, model: model)
            } else {
                printText(s, lines, sharedModules, entry: entry, classes: classes, model: model)
            }
        }
    }

    /// Rows from call-completion order (children first) to torchinfo's order (container first),
    /// each with its index among the rows of its depth, counted from 1.
    static func preorder(_ rows: [ModelSummary.Row]) -> [(ModelSummary.Row, Int)] {
        // a row closes every subtree that completed after its previous sibling at a depth below it
        var subtrees: [(depth: Int, rows: [ModelSummary.Row])] = []
        for r in rows {
            var children: [ModelSummary.Row] = []
            while let last = subtrees.last, last.depth > r.depth {
                children = last.rows + children
                subtrees.removeLast()
            }
            subtrees.append((r.depth, [r] + children))
        }
        var counters: [Int: Int] = [:]
        return subtrees.flatMap(\.rows).map { r in
            counters[r.depth, default: 0] += 1
            return (r, counters[r.depth] ?? 1)
        }
    }

    /// Groups of names that are one module object (segnet's `dec5.1`, `dec5.4`, …), in model order.
    static func sharedModules(_ model: Module) -> [(names: [String], type: String, parameters: Int)] {
        var groups: [ObjectIdentifier: [String]] = [:]
        var order: [(ObjectIdentifier, Module)] = []
        for (path, m) in model.namedModules() where !path.isEmpty {
            let id = ObjectIdentifier(m)
            if groups[id] == nil { order.append((id, m)) }
            groups[id, default: []].append(path)
        }
        return order.compactMap { id, m in
            guard let names = groups[id], names.count > 1 else { return nil }
            return (names, m.typeName, m.parameterCount)
        }
    }

    private static func megabytes(_ bytes: Int) -> String { String(format: "%.2f", Double(bytes) / 1_048_576) }

    /// torchinfo's unit: `1.81` with `(G)`, `12.35` with `(M)`.
    private static func multAdds(_ n: Int) -> (unit: String, value: String) {
        if n >= 1_000_000_000 { return ("G", String(format: "%.2f", Double(n) / 1e9)) }
        if n >= 1_000_000 { return ("M", String(format: "%.2f", Double(n) / 1e6)) }
        return ("", CLI.grouped(n))
    }

    private func printText(_ s: ModelSummary, _ lines: [Line], _ shared: [(names: [String], type: String, parameters: Int)],
                           entry: Zoo.Entry, classes: Int, model: Module) {
        print("\(entry.name) (\(model.typeName)), \(classes) classes, input \(s.inputShapes.map(CLI.shape).joined(separator: ", "))")
        let header = ["Layer (type:depth-idx)", "Name", "Output Shape", "Param #", "Trainable"]
        var rows: [[String]] = [[model.typeName, "", CLI.shape(s.rows.last?.outputShape ?? []), "--", "--"]]
        for l in lines {
            let r = l.row
            let indent = r.depth <= 1 ? "├─" : String(repeating: "│    ", count: r.depth - 1) + "└─"
            let params: String
            let trainable: String
            if l.hasSharedParameters {
                (params, trainable) = ("(shared)", "--")
            } else if !r.isLeaf || r.parameterCount == 0 {
                (params, trainable) = ("--", "--")
            } else {
                params = CLI.grouped(r.parameterCount)
                trainable = r.trainableParameterCount == r.parameterCount ? "True" : (r.trainableParameterCount == 0 ? "False" : "Partial")
            }
            rows.append(["\(indent)\(r.typeName): \(r.depth)-\(l.index)", r.path, CLI.shape(r.outputShape), params, trainable])
        }
        let table = CLI.table(header, rows, right: [3])
        let width = table.split(separator: "\n").map(\.count).max() ?? 80
        let rule = String(repeating: "=", count: width)
        let tableLines = table.split(separator: "\n", omittingEmptySubsequences: false)
        print(rule)
        print(tableLines[0])
        print(rule)
        for t in tableLines.dropFirst() { print(t) }
        print(rule)
        let (unit, value) = Summary.multAdds(s.multAdds)
        print("Total params: \(CLI.grouped(s.totalParameters))")
        print("Trainable params: \(CLI.grouped(s.trainableParameters))")
        print("Non-trainable params: \(CLI.grouped(s.nonTrainableParameters))")
        print("Total mult-adds\(unit.isEmpty ? "" : " (\(unit))"): \(value)")
        print(rule)
        print("Input size (MB): \(Summary.megabytes(s.inputBytes))")
        print("Forward/backward pass size (MB): \(Summary.megabytes(s.forwardBackwardBytes))")
        print("Params size (MB): \(Summary.megabytes(s.parameterBytes))")
        print("Estimated Total Size (MB): \(Summary.megabytes(s.inputBytes + s.forwardBackwardBytes + s.parameterBytes))")
        print(rule)
        if !shared.isEmpty {
            print("Shared layers (one module under several names; its parameters are counted once and loaded from the last name):")
            for g in shared {
                let params = g.parameters > 0 ? ", \(CLI.plural(g.parameters, "param"))" : ""
                print("  \(g.names.joined(separator: " = ")) (\(g.type)\(params))")
            }
        }
    }

    private func printJSON(_ s: ModelSummary, _ lines: [Line], _ shared: [(names: [String], type: String, parameters: Int)],
                           entry: Zoo.Entry, classes: Int, model: Module) {
        func shape(_ s: [Int]) -> JSONValue { .array(s.map { .int($0) }) }
        CLI.printJSON(.object([
            ("model", .string(entry.name)), ("type", .string(model.typeName)), ("num_classes", .int(classes)),
            ("input_shapes", .array(s.inputShapes.map(shape))),
            ("output_shape", shape(s.rows.last?.outputShape ?? [])),
            ("layers", .array(lines.map { l in
                let r = l.row
                return .object([
                    ("name", .string(r.path)), ("type", .string(r.typeName)), ("depth", .int(r.depth)), ("index", .int(l.index)),
                    ("output_shape", shape(r.outputShape)), ("parameters", .int(r.parameterCount)),
                    ("trainable_parameters", .int(r.trainableParameterCount)), ("mult_adds", .int(r.multAdds)),
                    ("leaf", .bool(r.isLeaf)), ("repeat", .bool(r.isRepeat)), ("shared_parameters", .bool(l.hasSharedParameters)),
                ])
            })),
            ("total_parameters", .int(s.totalParameters)), ("trainable_parameters", .int(s.trainableParameters)),
            ("non_trainable_parameters", .int(s.nonTrainableParameters)), ("mult_adds", .int(s.multAdds)),
            ("input_bytes", .int(s.inputBytes)), ("forward_backward_bytes", .int(s.forwardBackwardBytes)),
            ("parameter_bytes", .int(s.parameterBytes)),
            ("shared_modules", .array(shared.map { g in
                .object([("names", .array(g.names.map { .string($0) })), ("type", .string(g.type)), ("parameters", .int(g.parameters))])
            })),
            ("shared_key_groups", .array(s.sharedKeyGroups.map { .array($0.map { .string($0) }) })),
        ]))
    }
}
