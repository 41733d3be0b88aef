import Foundation
import XCTest
@testable import CkptData

/// The eval / no-augment pipelines, centre crops, resized crops and RandomResizedCrop geometry
/// against torchvision.
final class TransformTests: XCTestCase {
    struct TransformFile: Decodable {
        struct Pipeline: Decodable { var file: String; var size: Int; var kind: String; var shape: [Int]; var values: String }
        struct Photo: Decodable { var file: String; var size: Int; var uint8_sha256: String; var float_sha256: String; var rows: [String: String] }
        struct Center: Decodable { var height: Int; var width: Int; var rgb: String }
        struct Resized: Decodable { var top: Int; var left: Int; var height: Int; var width: Int; var size: Int; var rgb: String }
        var pipelines: [Pipeline]
        var photo_224: Photo
        var center_crop: [Center]
        var resized_crop: [Resized]
        var normalize_ramp: String
        var mean: [Float]
        var std: [Float]
    }

    struct CropCase: Decodable {
        var width: Int
        var height: Int
        var scale: [Double]
        var ratio: [Double]
        var seed: Int
        var area_draws: [Double]
        var aspect_draws: [Double]
        var offset_draws: [Int]
        var box: [String: Int]
    }

    /// Torch's recorded draws, handed back in order.
    struct Replay: AugmentationSampler {
        var areas: [Double], aspects: [Double], offsets: [Int]
        mutating func areaFraction(lower: Double, upper: Double) -> Double { areas.removeFirst() }
        mutating func aspectRatio(logLower: Float, logUpper: Float) -> Double { aspects.removeFirst() }
        mutating func offset(count: Int) -> Int {
            let v = offsets.removeFirst()
            XCTAssertLessThan(v, count)
            return v
        }
        mutating func chance(_ p: Double) -> Bool { false }
    }

    static func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
        guard a.count == b.count else { return .infinity }
        return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    func testEvalAndNoAugmentPipelinesEqualTorchvision() throws {
        let expected = try DataFixtures.decode(TransformFile.self, "transforms.json")
        var worst: Float = 0
        for p in expected.pipelines {
            let grey = p.kind == "eval_grey"
            let channels = grey ? 1 : 3
            let transform: ImageTransform = p.kind == "no_augment" ? .noAugment(size: p.size, channels: channels) : .eval(size: p.size, channels: channels)
            var rng = SeededRandom(seed: 0)
            let got = try transform.tensorValues(try DataFixtures.image(p.file, channels: channels), sampler: &rng)
            XCTAssertEqual(transform.outputShape, p.shape, "\(p.file) \(p.kind)")
            let difference = Self.maxDifference(got, try DataFixtures.floats(p.values))
            worst = max(worst, difference)
            XCTAssertEqual(difference, 0, "\(p.file) \(p.kind) \(p.size): max difference \(difference)")
        }
        XCTAssertEqual(worst, 0)
    }

    func testRealisticPhotoAt224IsBitExact() throws {
        let expected = try DataFixtures.decode(TransformFile.self, "transforms.json").photo_224
        let image = try DataFixtures.image(expected.file)
        var rng = SeededRandom(seed: 0)
        let transform = ImageTransform.eval(size: 224)
        let cropped = try transform.apply(to: image, sampler: &rng)
        XCTAssertEqual(SHA256Hex.digest(cropped.pixels), expected.uint8_sha256)
        let values = try cropped.tensorValues(channels: 3, normalization: .imagenet)
        let bytes = values.flatMap { v -> [UInt8] in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
        XCTAssertEqual(SHA256Hex.digest(bytes), expected.float_sha256)
        for (row, b64) in expected.rows {
            let r = try XCTUnwrap(Int(row))
            let want = try DataFixtures.floats(b64)
            var got: [Float] = []
            for c in 0 ..< 3 {
                let start = (c * 224 + r) * 224
                got += values[start ..< start + 224]
            }
            XCTAssertEqual(Self.maxDifference(got, want), 0, "row \(r)")
        }
    }

    func testCenterCropPadsAndRoundsOffsetsAsTorchvision() throws {
        let expected = try DataFixtures.decode(TransformFile.self, "transforms.json")
        let source = try DataFixtures.image("crop_src.png")
        for c in expected.center_crop {
            let out = try source.centerCropped(width: c.width, height: c.height)
            DataFixtures.assertBytesEqual(out.pixels, try DataFixtures.bytes(c.rgb), "center crop \(c.height)x\(c.width)")
        }
    }

    func testResizedCropEqualsTorchvision() throws {
        let expected = try DataFixtures.decode(TransformFile.self, "transforms.json")
        let source = try DataFixtures.image("resize_src.png")
        for c in expected.resized_crop {
            let box = CropBox(top: c.top, left: c.left, height: c.height, width: c.width)
            let out = try RandomResizedCrop.resizedCrop(source, box: box, size: c.size)
            DataFixtures.assertBytesEqual(out.pixels, try DataFixtures.bytes(c.rgb), "resized crop \(box)")
        }
    }

    func testToTensorAndNormalizeRoundAsTorch() throws {
        let expected = try DataFixtures.decode(TransformFile.self, "transforms.json")
        let ramp = try RasterImage(width: 16, height: 16, channels: 3, pixels: (0 ..< 256).flatMap { [UInt8($0), UInt8($0), UInt8($0)] })
        XCTAssertEqual(Normalization.imagenet.mean, expected.mean)
        let got = try ramp.tensorValues(channels: 3, normalization: .imagenet)
        XCTAssertEqual(Self.maxDifference(got, try DataFixtures.floats(expected.normalize_ramp)), 0)
    }

    func testRandomResizedCropGeometryMatchesTorchvisionGivenTheSameDraws() throws {
        let cases = try DataFixtures.decode([CropCase].self, "crops.json")
        XCTAssertGreaterThan(cases.count, 20)
        for c in cases {
            let crop = RandomResizedCrop(size: 224, scale: c.scale[0] ... c.scale[1], ratio: c.ratio[0] ... c.ratio[1])
            var replay = Replay(areas: c.area_draws, aspects: c.aspect_draws, offsets: c.offset_draws)
            let box = crop.box(width: c.width, height: c.height, sampler: &replay)
            let want = CropBox(top: c.box["top"] ?? -1, left: c.box["left"] ?? -1, height: c.box["height"] ?? -1, width: c.box["width"] ?? -1)
            XCTAssertEqual(box, want, "\(c.width)x\(c.height) seed \(c.seed)")
            XCTAssertTrue(replay.areas.isEmpty && replay.aspects.isEmpty && replay.offsets.isEmpty, "draws left over: seed \(c.seed)")
        }
    }

    func testSeededCropsStayInsideTheImageAndFollowTheScale() throws {
        let crop = RandomResizedCrop(size: 32)
        var rng = SeededRandom(seed: 42)
        var fractions: [Double] = []
        for (w, h) in [(500, 375), (375, 500), (33, 20), (1000, 10), (1, 1)] {
            for _ in 0 ..< 2000 {
                let b = crop.box(width: w, height: h, sampler: &rng)
                XCTAssertTrue(b.top >= 0 && b.left >= 0 && b.height > 0 && b.width > 0 && b.top + b.height <= h && b.left + b.width <= w, "\(b) in \(w)x\(h)")
                if w == 500 { fractions.append(Double(b.width * b.height) / Double(w * h)) }
            }
        }
        let mean = fractions.reduce(0, +) / Double(fractions.count)
        // torchvision's get_params over 20000 torch draws on 500x375: mean 0.435, sd 0.216
        XCTAssertEqual(mean, 0.435, accuracy: 0.02)
    }

    func testFlipMirrorsImageAndMaskTogether() throws {
        let image = try DataFixtures.image("crop_src.png")
        let mask = try LabelMap(width: image.width, height: image.height, labels: (0 ..< image.width * image.height).map { UInt8($0 % image.width) })
        var always = AlwaysFlip()
        let t = ImageTransform(geometry: .resizeCenterCrop(resize: 17, crop: 17), flipProbability: 1, channels: 3, normalization: .imagenet)
        let (outImage, outMask) = try t.apply(to: image, mask: mask, sampler: &always)
        let plain = try image.centerCropped(width: 17, height: 17)
        XCTAssertEqual(outImage, plain.flippedHorizontally())
        XCTAssertEqual(Array(outMask.labels.prefix(17)), (0 ..< 17).reversed().map { UInt8($0 + 3) })
        XCTAssertEqual(image.flippedHorizontally().flippedHorizontally(), image)
    }

    struct AlwaysFlip: AugmentationSampler {
        func areaFraction(lower: Double, upper: Double) -> Double { upper }
        func aspectRatio(logLower: Float, logUpper: Float) -> Double { 1 }
        func offset(count: Int) -> Int { 0 }
        func chance(_ p: Double) -> Bool { true }
    }

    func testSegmentationRandomCropKeepsImageAndMaskAligned() throws {
        // a mask that is the image's own red channel: after any crop + resize the nearest mask
        // must still be a plausible sample of the same region (same box, same flip)
        let image = try DataFixtures.image("resize_src.png")
        let mask = try LabelMap(width: image.width, height: image.height, labels: stride(from: 0, to: image.pixels.count, by: 3).map { image.pixels[$0] })
        let t = ImageTransform.train(size: 40)
        var a = SeededRandom(seed: 9, stream: [1])
        var b = SeededRandom(seed: 9, stream: [1])
        let (outImage, outMask) = try t.apply(to: image, mask: mask, sampler: &a)
        let alone = try t.apply(to: image, sampler: &b)
        XCTAssertEqual(outImage, alone)
        XCTAssertEqual(outMask.width, 40)
        let meanImage = stride(from: 0, to: outImage.pixels.count, by: 3).reduce(0) { $0 + Int(outImage.pixels[$1]) } / 1600
        let meanMask = outMask.labels.reduce(0) { $0 + Int($1) } / 1600
        XCTAssertEqual(Double(meanImage), Double(meanMask), accuracy: 12)
    }

    /// Two inputs travel as the red and green planes of one image: every transform (random crop
    /// and flip included) gives each plane what it gives that image alone, converted to grey.
    func testTwoImagesAsPlanesTransformAsEachAlone() throws {
        let first = try DataFixtures.image("resize_src.png")
        var noise = SeededRandom(seed: 3, stream: [7])
        let second = try RasterImage(width: first.width, height: first.height, channels: 1,
                                     pixels: (0 ..< first.width * first.height).map { _ in UInt8(truncatingIfNeeded: noise.next()) })
        let both = try RasterImage.planes(first, second, secondFile: "b.png")
        XCTAssertEqual(both.channels, 3)
        let mask = try LabelMap(width: first.width, height: first.height, labels: [UInt8](repeating: 1, count: first.width * first.height))
        for (t, grey) in [(ImageTransform.train(size: 40, channels: 3, normalization: .imagenetGrey), ImageTransform.train(size: 40, channels: 1)),
                          (ImageTransform.eval(size: 40, channels: 3, normalization: .imagenetGrey), ImageTransform.eval(size: 40, channels: 1))] {
            for seed in 0 ..< UInt64(4) {
                var a = SeededRandom(seed: seed, stream: [1]), b = a, c = a
                let (out, _) = try t.apply(to: both, mask: mask, sampler: &a)
                let (x1, _) = try grey.apply(to: first, mask: mask, sampler: &b)
                let (x2, _) = try grey.apply(to: second, mask: mask, sampler: &c)
                XCTAssertEqual(stride(from: 0, to: out.pixels.count, by: 3).map { out.pixels[$0] }, x1.pixels, "plane 0, seed \(seed)")
                XCTAssertEqual(stride(from: 1, to: out.pixels.count, by: 3).map { out.pixels[$0] }, x2.pixels, "plane 1, seed \(seed)")
            }
        }
        let small = try RasterImage(width: 3, height: 2, channels: 1, repeating: 0)
        XCTAssertThrowsError(try RasterImage.planes(first, small, secondFile: "b.png")) { e in
            XCTAssertTrue("\(e)".contains("b.png") && "\(e)".contains("same size"), "\(e)")
        }
    }

}
