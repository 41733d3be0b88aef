import ArgumentParser

/// The `ckpt` command: PyTorch checkpoint surgery without Python.
public struct Ckpt: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "ckpt",
        abstract: "Inspect, convert, diff, scan and transplant PyTorch checkpoints without running Python.",
        discussion: "A checkpoint is a pickle; ckpt interprets it as data and never runs code from it.",
        version: "0.1.0",
        subcommands: [Inspect.self, Convert.self, Diff.self, Scan.self, Transplant.self, Init.self, ZooListing.self, Summary.self, Forward.self, Bench.self]
    )
    public init() {}
}
