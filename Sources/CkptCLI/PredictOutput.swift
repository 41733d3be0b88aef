import CkptData
import CkptFormat
import CkptTrain
import Foundation

/// What `ckpt predict` prints: one line per sample, or one JSON report.
struct PredictOutput {
    let c: Predict
    let fitted: FittedModel
    let predictor: Predictor
    let labels: [String]?
    let labelSource: String?

    /// The label of class `i`: its name, or its index without a class list.
    func label(_ i: Int) -> String {
        labels.map { i < $0.count ? $0[i] : String(i) } ?? String(i)
    }

    /// `label` in JSON: the name, or null without a class list.
    func jsonLabel(_ i: Int) -> JSONValue {
        labels.map { i < $0.count ? .string($0[i]) : .null } ?? .null
    }

    /// `48.9%`; below 0.05% it says `<0.1%` rather than a bare 0.
    static func percent(_ p: Float) -> String {
        let x = Double(p) * 100
        if x > 0, x < 0.05 { return "<0.1%" }
        return String(format: "%.1f%%", x)
    }

    /// The fields every report starts with.
    var header: [(key: String, value: JSONValue)] {
        let t = predictor.transform
        var geometry = "CenterCrop(\(t.size))"
        if case let .resizeCenterCrop(resize, crop) = t.geometry { geometry = "Resize(\(resize)) CenterCrop(\(crop))" }
        func list(_ v: [Float]) -> String { v.map { CLI.number(Double($0)) }.joined(separator: ",") }
        return [
            ("model", .string(fitted.name)), ("weights", .string(c.weights)), ("num_classes", .int(fitted.numClasses)),
            ("image_size", .int(predictor.imageSize)),
            ("transform", .string("\(geometry) ToTensor Normalize(\(list(t.normalization.mean)); \(list(t.normalization.std)))")),
            ("inputs", .string(predictor.inputForm.rawValue)), ("labels", labelSource.map { .string($0) } ?? .null),
        ]
    }

    /// The files of a sample in JSON: `image`, and `image2` for a pair.
    static func files(_ files: [String]) -> [(key: String, value: JSONValue)] {
        var out: [(key: String, value: JSONValue)] = [("image", .string(files.first ?? ""))]
        if files.count > 1 { out.append(("image2", .string(files[1]))) }
        return out
    }

    /// Skipped samples in JSON.
    static func skippedJSON(_ skipped: [SkippedImage]) -> JSONValue {
        .array(skipped.map { .object([("image", .string($0.path)), ("error", .string($0.error.message))]) })
    }

    /// Every classified sample.
    func classes(_ results: [(files: [String], top: [ClassProbability])], skipped: [SkippedImage]) {
        if c.json {
            let images = results.map { r -> JSONValue in
                .object(PredictOutput.files(r.files) + [("predictions", .array(r.top.map { p in
                    .object([("index", .int(p.index)), ("label", jsonLabel(p.index)), ("probability", .double(Double(p.probability)))])
                }))])
            }
            CLI.printJSON(.object(header + [("images", .array(images)), ("skipped", PredictOutput.skippedJSON(skipped))]))
            return
        }
        for r in results {
            let top = r.top.map { "\(label($0.index)) (\(PredictOutput.percent($0.probability)))" }.joined(separator: ", ")
            print("\(r.files.joined(separator: " + ")): \(top)")
        }
    }

    /// Every segmented sample, with where its mask went.
    func masks(_ results: [(prediction: MaskPrediction, path: String?)], skipped: [SkippedImage]) {
        if c.json {
            let images = results.map { r -> JSONValue in
                let total = max(1, r.prediction.mask.width * r.prediction.mask.height)
                let classes = r.prediction.pixelsPerClass.enumerated().map { i, n -> JSONValue in
                    .object([("index", .int(i)), ("label", jsonLabel(i)), ("pixels", .int(n)), ("fraction", .double(Double(n) / Double(total)))])
                }
                return .object(PredictOutput.files(r.prediction.files) + [
                    ("mask", r.path.map { .string($0) } ?? .null), ("width", .int(r.prediction.mask.width)),
                    ("height", .int(r.prediction.mask.height)), ("classes", .array(classes)),
                ])
            }
            CLI.printJSON(.object(header + [("images", .array(images)), ("skipped", PredictOutput.skippedJSON(skipped))]))
            return
        }
        for r in results {
            let m = r.prediction.mask
            let total = Float(max(1, m.width * m.height))
            let shares = r.prediction.pixelsPerClass.enumerated().filter { $0.element > 0 }
                .map { "\(label($0.offset)) \(PredictOutput.percent(Float($0.element) / total))" }.joined(separator: ", ")
            let written = r.path.map { " -> \($0)" } ?? ""
            print("\(r.prediction.files.joined(separator: " + ")): \(m.width)x\(m.height) mask\(written): \(shares)")
        }
    }
}
