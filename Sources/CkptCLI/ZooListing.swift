import ArgumentParser
import CkptFormat
import CkptNN
import CkptZoo
import Foundation

/// `ckpt zoo`: every architecture ckpt can build, with its parameter count.
struct ZooListing: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zoo",
        abstract: "List the models ckpt can build, with their default classes, input and parameter counts.",
        discussion: """
            Names are torchvision's (`torchvision.models.get_model(name)`), plus smallcnn and segnet. Parameters \
            count distinct elements as sum(p.numel() for p in model.parameters()) does: buffers excluded, \
            shared parameters (segnet's repeated triples) once. State-dict entries count keys, buffers included.
            """)

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    /// One listed model.
    private struct Listing: Sendable {
        var entry: Zoo.Entry
        var parameters: Int
        var stateDictEntries: Int
        var sharedGroups: Int
    }

    func run() throws {
        try CLI.run {
            // keys and shapes only: no weight is allocated
            let listings = try Zoo.entries.map { e in
                let spec = try Zoo.specification(e.name)
                return Listing(entry: e, parameters: spec.parameterCount, stateDictEntries: spec.parameterSpecs.count,
                               sharedGroups: spec.sharedKeyGroups.count)
            }
            if json {
                CLI.printJSON(.array(listings.map { l in
                    .object([
                        ("name", .string(l.entry.name)), ("family", .string(l.entry.family)),
                        ("num_classes", .int(l.entry.defaultClassCount)),
                        ("input_shapes", .array(l.entry.defaultInputShapes.map { .array($0.map { .int($0) }) })),
                        ("parameters", .int(l.parameters)), ("parameter_bytes", .int(4 * l.parameters)),
                        ("state_dict_entries", .int(l.stateDictEntries)), ("shared_key_groups", .int(l.sharedGroups)),
                    ])
                }))
                return
            }
            let rows = listings.map { l in
                [l.entry.name, l.entry.family, String(l.entry.defaultClassCount), ModelShapes.text(l.entry.defaultInputShapes),
                 CLI.grouped(l.parameters), CLI.bytes(4 * l.parameters), String(l.stateDictEntries)]
            }
            print(CLI.table(["model", "family", "classes", "input", "parameters", "float32", "keys"], rows, right: [2, 4, 5, 6]))
        }
    }
}
