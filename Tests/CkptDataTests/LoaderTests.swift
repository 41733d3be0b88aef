import Foundation
import XCTest
@testable import CkptData

/// The batch loader: order, determinism across thread counts, the memory bound, bad files.
final class LoaderTests: XCTestCase {
    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-loader-\(UUID().uuidString)")
        let images = ["baseline_420.jpg", "progressive.jpg", "rgb8.png", "palette8.png", "grey.jpg", "cmyk.jpg", "rgba16.png",
                      "optimized.jpg", "sub440.jpg", "tall_3x40.jpg", "grey16.png", "exif_orientation.jpg", "resize_src.png"]
        for (i, name) in images.enumerated() {
            let dir = temp.appendingPathComponent(["ant", "bee", "cat"][i % 3])
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: DataFixtures.path("images/" + name), toPath: dir.appendingPathComponent(String(format: "%02d_", i) + name).path)
        }
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: temp)
    }

    func all(_ loader: BatchLoader, epoch: Int) throws -> [ImageBatch] {
        let batches = loader.epoch(epoch)
        var out: [ImageBatch] = []
        while let b = try batches.next() { out.append(b) }
        XCTAssertEqual(out.count, loader.batchesPerEpoch)
        return out
    }

    func testWithoutShuffleBatchesFollowImageFolderOrder() throws {
        let folder = try ImageFolder(root: temp.path)
        let loader = try BatchLoader(samples: folder.samples, transform: .eval(size: 16), options: LoaderOptions(batchSize: 4, shuffle: false))
        let batches = try all(loader, epoch: 0)
        XCTAssertEqual(batches.map(\.count), [4, 4, 4, 1])
        XCTAssertEqual(batches.flatMap(\.sampleIndices), Array(0 ..< 13))
        XCTAssertEqual(batches.flatMap(\.labels), folder.samples.map(\.classIndex))
        XCTAssertEqual(batches[0].shape, [4, 3, 16, 16])
        // an eval batch holds exactly what the transform gives each image alone
        var rng = SeededRandom(seed: 0)
        let first = try ImageTransform.eval(size: 16).tensorValues(try ImageDecoder.decode(contentsOf: folder.samples[1].path).image, sampler: &rng)
        XCTAssertEqual(Array(batches[0].images[768 ..< 1536]), first)
        XCTAssertEqual(try batches[0].tensor().shape, [4, 3, 16, 16])
    }

    func testThreadsDoNotChangeTheBatches() throws {
        let folder = try ImageFolder(root: temp.path)
        var results: [[ImageBatch]] = []
        for workers in [0, 1, 2, 4] {
            let options = LoaderOptions(batchSize: 3, shuffle: true, seed: 11, workers: workers, prefetchBatches: 2)
            let loader = try BatchLoader(samples: folder.samples, transform: .train(size: 24), options: options)
            results.append(try all(loader, epoch: 3))
        }
        for r in results.dropFirst() {
            XCTAssertEqual(r.map(\.images), results[0].map(\.images))
            XCTAssertEqual(r.map(\.labels), results[0].map(\.labels))
            XCTAssertEqual(r.map(\.sampleIndices), results[0].map(\.sampleIndices))
        }
    }

    func testSeedAndEpochChooseOrderAndAugmentation() throws {
        let folder = try ImageFolder(root: temp.path)
        func loader(_ seed: UInt64) throws -> BatchLoader {
            try BatchLoader(samples: folder.samples, transform: .train(size: 20), options: LoaderOptions(batchSize: 13, seed: seed, workers: 1))
        }
        let a = try loader(1), b = try loader(1), c = try loader(2)
        XCTAssertEqual(a.order(epoch: 0), b.order(epoch: 0))
        XCTAssertNotEqual(a.order(epoch: 0), a.order(epoch: 1))
        XCTAssertNotEqual(a.order(epoch: 0), c.order(epoch: 0))
        XCTAssertEqual(Set(a.order(epoch: 5)), Set(0 ..< 13))
        XCTAssertEqual(try a.batch(epoch: 0, index: 0).images, try b.batch(epoch: 0, index: 0).images)
        XCTAssertNotEqual(try a.batch(epoch: 0, index: 0).images, try a.batch(epoch: 1, index: 0).images)
    }

    func testPrefetchIsBoundedWhileTheConsumerIsSlow() throws {
        let folder = try ImageFolder(root: temp.path)
        let loader = try BatchLoader(samples: folder.samples, transform: .eval(size: 8),
                                     options: LoaderOptions(batchSize: 1, shuffle: false, workers: 3, prefetchBatches: 2))
        let batches = loader.epoch(0)
        var n = 0
        while let b = try batches.next() {
            XCTAssertEqual(b.sampleIndices, [n])
            n += 1
            Thread.sleep(forTimeInterval: 0.01)
        }
        XCTAssertEqual(n, 13)
        XCTAssertLessThanOrEqual(batches.maximumAhead, 2)
        XCTAssertGreaterThanOrEqual(batches.maximumAhead, 1)
    }

    func testDroppingAnEpochHalfWayStopsItsWorkers() throws {
        let folder = try ImageFolder(root: temp.path)
        let loader = try BatchLoader(samples: folder.samples, transform: .eval(size: 8), options: LoaderOptions(batchSize: 1, workers: 2, prefetchBatches: 1))
        for _ in 0 ..< 20 {
            let batches = loader.epoch(0)
            _ = try batches.next()
        }
        let batches = loader.epoch(1)
        batches.cancel()
        XCTAssertNil(try batches.next())
    }

    func testBadFilesAreSkippedAndReportedOrFailTheirBatch() throws {
        try Data("not an image".utf8).write(to: temp.appendingPathComponent("ant/zz_text.jpg"))
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: DataFixtures.path("images/baseline_420.jpg")))
        try jpeg.prefix(jpeg.count / 2).write(to: temp.appendingPathComponent("bee/zz_cut.jpg"))
        let folder = try ImageFolder(root: temp.path)
        XCTAssertEqual(folder.samples.count, 15)
        let skip = try BatchLoader(samples: folder.samples, transform: .noAugment(size: 12),
                                   options: LoaderOptions(batchSize: 5, shuffle: false, badImages: .skip))
        let batches = try all(skip, epoch: 0)
        XCTAssertEqual(batches.map(\.count), [5, 4, 4]) // zz_text.jpg ends ant (batch 1), zz_cut.jpg bee (batch 2)
        let skipped = batches.flatMap(\.skipped)
        XCTAssertEqual(skipped.map { URL(fileURLWithPath: $0.path).lastPathComponent }, ["zz_text.jpg", "zz_cut.jpg"])
        XCTAssertEqual(skipped.map(\.error.kind), [.unsupported, .truncated])
        XCTAssertEqual(batches[1].shape, [4, 3, 12, 12])
        XCTAssertEqual(batches[1].images.count, 4 * 3 * 144)
        XCTAssertEqual(batches[1].sampleIndices, [6, 7, 8, 9])

        let fail = try BatchLoader(samples: folder.samples, transform: .noAugment(size: 12),
                                   options: LoaderOptions(batchSize: 5, shuffle: false, badImages: .fail))
        let epoch = fail.epoch(0)
        XCTAssertEqual(try epoch.next()?.count, 5)
        XCTAssertThrowsError(try epoch.next()) { XCTAssertEqual(($0 as? DataError)?.kind, .unsupported) }
        XCTAssertThrowsError(try epoch.next()) { XCTAssertEqual(($0 as? DataError)?.kind, .truncated) }
        XCTAssertNil(try epoch.next())
    }

    func testDropLastAndBadOptions() throws {
        let folder = try ImageFolder(root: temp.path)
        let loader = try BatchLoader(samples: folder.samples, transform: .eval(size: 8), options: LoaderOptions(batchSize: 4, dropLast: true))
        XCTAssertEqual(loader.batchesPerEpoch, 3)
        XCTAssertThrowsError(try loader.batch(epoch: 0, index: 3))
        XCTAssertThrowsError(try BatchLoader(samples: folder.samples, transform: .eval(size: 8), options: LoaderOptions(batchSize: 0)))
        XCTAssertThrowsError(try BatchLoader(samples: folder.samples, transform: .eval(size: 0), options: LoaderOptions(batchSize: 2)))
    }

    func testGreyAndTwoChannelOutputs() throws {
        let folder = try ImageFolder(root: temp.path)
        for channels in [1, 2] {
            let loader = try BatchLoader(samples: folder.samples, transform: .eval(size: 8, channels: channels), options: LoaderOptions(batchSize: 2, shuffle: false))
            let b = try loader.batch(epoch: 0, index: 0)
            XCTAssertEqual(b.shape, [2, channels, 8, 8])
            if channels == 2 { XCTAssertEqual(Array(b.images[0 ..< 64]), Array(b.images[64 ..< 128])) }
        }
    }

    func testSegmentationBatchesCarryMasksCroppedLikeTheirImages() throws {
        let seg = temp.appendingPathComponent("seg")
        for dir in ["images", "masks"] { try FileManager.default.createDirectory(at: seg.appendingPathComponent(dir), withIntermediateDirectories: true) }
        // the image is mask_grey.png: the same class indices as grey values, the same 41x29
        try FileManager.default.copyItem(atPath: DataFixtures.path("images/mask_grey.png"), toPath: seg.appendingPathComponent("images/a.png").path)
        try FileManager.default.copyItem(atPath: DataFixtures.path("images/mask_palette.png"), toPath: seg.appendingPathComponent("masks/a.png").path)
        let ds = try SegmentationDataset.load(seg.path)
        XCTAssertEqual(ds.train.count, 1)
        let loader = try BatchLoader(segmentation: ds.train, transform: .train(size: 16), options: LoaderOptions(batchSize: 1, seed: 3))
        let b = try loader.batch(epoch: 0, index: 0)
        XCTAssertEqual(b.labelShape, [1, 16, 16])
        XCTAssertEqual(b.labels.count, 256)
        XCTAssertTrue(Set(b.labels).isSubset(of: [0, 1, 2, 3, 4]))
        // the same box and flip, drawn again from the sample's stream (seed 3, epoch 0, sample 0)
        var rng = SeededRandom(seed: 3, stream: [0, 0])
        let box = RandomResizedCrop(size: 16).box(width: 41, height: 29, sampler: &rng)
        let flip = rng.chance(0.5)
        var mask = try ImageDecoder.labelMap(contentsOf: ds.train[0].maskPath).cropped(box).resizedNearest(width: 16, height: 16)
        var image = try RandomResizedCrop.resizedCrop(try ImageDecoder.decode(contentsOf: ds.train[0].imagePath, channels: 3), box: box, size: 16)
        if flip {
            mask = mask.flippedHorizontally()
            image = image.flippedHorizontally()
        }
        XCTAssertEqual(b.labels, mask.labels.map { Int($0) })
        XCTAssertEqual(Array(b.images[0 ..< 768]), try image.tensorValues(channels: 3, normalization: .imagenet))
    }
}
