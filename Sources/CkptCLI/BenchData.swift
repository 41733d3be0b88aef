import ArgumentParser
import CkptData
import CkptFormat
import Foundation

/// `ckpt bench data DIR`: the data half of fine-tuning alone: decode, transform and batch every
/// image of an image folder, epoch after epoch, and report images per second.
struct BenchData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Time decoding, transforming and batching the images of an image folder.",
        discussion: """
            DIR is DIR/<class>/* or DIR/train/<class>/* (its training split is read). Each epoch visits \
            every image once in a seeded shuffled order and builds float32 NCHW batches as \
            torchvision's ImageFolder + DataLoader would: --transform train is RandomResizedCrop(SIZE), \
            RandomHorizontalFlip, ToTensor, Normalize; eval is Resize(round(SIZE*256/224)), \
            CenterCrop(SIZE); no-augment is Resize(SIZE), CenterCrop(SIZE). The first epoch is a \
            warm-up (file cache); images_per_second is the best of the others. Bad images are skipped \
            and counted.
            """)

    @Argument(help: "An image folder.")
    var dir: String

    @Option(name: .long, help: "Output side of every image.")
    var size = 224

    @Option(name: .long, help: "Images per batch.")
    var batch = 32

    @Option(name: .long, help: "Decoding threads (0: the main thread).")
    var workers = 2

    @Option(name: .long, help: "Batches decoded ahead at most.")
    var prefetch = 4

    @Option(name: .long, help: "Epochs, the first a warm-up.")
    var epochs = 3

    @Option(name: .long, help: "train, eval or no-augment.")
    var transform = "train"

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    func validate() throws {
        if size < 1 || batch < 1 || prefetch < 1 { throw ValidationError("--size, --batch and --prefetch must be positive") }
        if workers < 0 { throw ValidationError("--workers must be 0 or more, got \(workers)") }
        if epochs < 2 { throw ValidationError("--epochs must be at least 2 (the first is a warm-up), got \(epochs)") }
        if !["train", "eval", "no-augment"].contains(transform) { throw ValidationError("--transform must be train, eval or no-augment, got '\(transform)'") }
    }

    func run() throws {
        // batches are allocated on the workers and freed on this thread: without a fixed mmap
        // threshold glibc keeps them in per-thread arenas and the peak RSS wanders
        CLI.returnLargeAllocations()
        try CLI.run {
            let dataset = try ImageDataset.load(dir)
            let pipeline: ImageTransform = switch transform {
            case "eval": .eval(size: size)
            case "no-augment": .noAugment(size: size)
            default: .train(size: size)
            }
            let options = LoaderOptions(batchSize: batch, shuffle: true, seed: 0, workers: workers, prefetchBatches: prefetch, badImages: .skip)
            let loader = try BatchLoader(samples: dataset.train, transform: pipeline, options: options)
            var best = Double.infinity
            var images = 0, skipped = 0, ahead = 0
            var checksum = 0.0
            for epoch in 0 ..< epochs {
                let start = Date()
                let batches = loader.epoch(epoch)
                images = 0
                skipped = 0
                while let b = try batches.next() {
                    images += b.count
                    skipped += b.skipped.count
                    checksum += Double(b.images.first ?? 0)
                }
                ahead = max(ahead, batches.maximumAhead)
                if epoch > 0 { best = min(best, Date().timeIntervalSince(start)) }
            }
            let rate = Double(images) / best
            if json {
                CLI.printJSON(.object([
                    ("dir", .string(dir)), ("transform", .string(transform)), ("size", .int(size)), ("batch", .int(batch)),
                    ("workers", .int(workers)), ("images", .int(images)), ("skipped", .int(skipped)),
                    ("issues", .int(dataset.issues.count)), ("seconds", .double(best)), ("images_per_second", .double(rate)),
                    ("max_batches_ahead", .int(ahead)), ("peak_rss_bytes", .int(BenchForward.peakResidentBytes())),
                    ("checksum", .double(checksum)),
                ]))
            } else {
                print(String(format: "%d images (%d skipped) in %.3f s: %.1f images/s (%@, %d workers)", images, skipped, best, rate, transform, workers))
            }
        }
    }
}
