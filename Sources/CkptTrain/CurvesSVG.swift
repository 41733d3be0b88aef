#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// `OUT.curves.svg`: the learning curves of a run, as one standalone SVG 1.1 file a browser opens
// directly. Two panels side by side: the loss (train, val) and the quality (accuracy train/val;
// for segmentation pixel accuracy train/val and the validation mIoU), epochs on x. Each panel has
// ticks on "nice" values (1, 2, 5 × 10^k), labels, a legend; a dashed line marks the best epoch.
//
// Written by hand as text: every coordinate is printed with at most two decimals, so the same
// log always gives the same bytes. A value that is not finite (a diverged epoch) is not plotted:
// its curve breaks into separate polylines around it, and a × at the top of the panel says which
// epoch and value (hover text). Every finite point also gets a dot, so an isolated one shows.

/// Draws the learning curves of a `TrainingLog` as a standalone SVG.
///
/// PyTorch counterpart: none; the matplotlib figure tutorials draw after training.
public enum CurvesSVG {
    /// Canvas and panel geometry, in SVG user units (pixels).
    enum Layout {
        static let width = 960.0
        static let height = 420.0
        static let plotTop = 70.0
        static let plotBottom = 340.0
        /// The two panels' plot areas start at x = panel offset + `plotLeft`.
        static let panelOffsets = [0.0, 480.0]
        static let plotLeft = 64.0
        static let plotRight = 450.0
    }

    /// One curve: the values by epoch (nil where not measured) and how it is drawn.
    struct Series {
        /// The legend's text.
        var label: String
        /// What the values are, for hover text: `val loss`, `train accuracy`.
        var name: String
        var className: String
        var color: String
        var points: [(epoch: Int, value: Double?)]
    }

    /// The SVG document for `log`, titled `title` (escaped; the training output's name, say).
    public static func render(_ log: TrainingLog, title: String) -> String {
        let epochs = log.epochs
        func series(_ label: String, _ name: String, _ className: String, _ color: String, _ value: (EpochMetrics) -> Double?) -> Series {
            Series(label: label, name: name, className: className, color: color, points: epochs.map { ($0.epoch, value($0)) })
        }
        let train = "#1f77b4", val = "#ff7f0e", miou = "#2ca02c"
        let segmentation = log.task == .segmentation
        var loss = [series("train", "train loss", "loss-train", train) { $0.trainLoss }]
        var quality = [series(segmentation ? "train acc" : "train", "train accuracy", "accuracy-train", train) { $0.trainAccuracy }]
        if log.hasValidation {
            loss.append(series("val", "val loss", "loss-val", val) { $0.validationLoss })
            quality.append(series(segmentation ? "val acc" : "val", "val accuracy", "accuracy-val", val) { $0.validationAccuracy })
            if segmentation { quality.append(series("val mIoU", "val mIoU", "miou-val", miou) { $0.validationMeanIoU }) }
        }
        let xAxis = Axis.epochs(epochs.map(\.epoch))
        let best = log.bestEpoch

        var out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        out += "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"\(n(Layout.width))\" height=\"\(n(Layout.height))\" "
        out += "viewBox=\"0 0 \(n(Layout.width)) \(n(Layout.height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        out += "<title>\(escape(title))</title>\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
        out += "<text x=\"\(n(Layout.width / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">\(escape(title))</text>\n"
        let qualityTitle = segmentation ? "pixel accuracy and mIoU" : "accuracy"
        out += panel(0, title: "loss", yLabel: "cross-entropy", series: loss, xAxis: xAxis, yAxis: Axis.values(loss, unitInterval: false),
                     best: best?.epoch, bestSeries: "loss-val")
        out += panel(1, title: qualityTitle, yLabel: segmentation ? "fraction of pixels / mIoU" : "fraction correct",
                     series: quality, xAxis: xAxis, yAxis: Axis.values(quality, unitInterval: true),
                     best: best?.epoch, bestSeries: segmentation ? "miou-val" : "accuracy-val")
        if let best, let q = best.validationQuality(for: log.task) {
            var note = "best epoch \(best.epoch): val \(log.task.qualityName) \(fixed(q, 4))"
            if let l = best.validationLoss { note += ", val loss \(fixed(l, 4))" }
            out += "<text class=\"best-note\" x=\"\(n(Layout.plotLeft))\" y=\"408\" fill=\"#333333\">\(escape(note))</text>\n"
        } else if epochs.isEmpty {
            out += "<text x=\"\(n(Layout.plotLeft))\" y=\"408\" fill=\"#333333\">no epoch finished yet</text>\n"
        }
        out += "</svg>\n"
        return out
    }

    /// Replaces `path` with `render(log, title:)`, atomically.
    /// - Throws: `ReportError(.io)` naming `path`, which is then as it was.
    public static func write(_ log: TrainingLog, title: String, to path: String) throws {
        try ReportFile.replace(path, with: Array(render(log, title: title).utf8))
    }

    /// One panel: frame, grid and ticks, axis labels, curves, the best epoch, the legend.
    static func panel(_ index: Int, title: String, yLabel: String, series: [Series], xAxis: Axis, yAxis: Axis,
                      best: Int?, bestSeries: String) -> String {
        let dx = Layout.panelOffsets[index]
        let left = dx + Layout.plotLeft, right = dx + Layout.plotRight
        let top = Layout.plotTop, bottom = Layout.plotBottom
        func x(_ epoch: Double) -> Double { left + xAxis.fraction(epoch) * (right - left) }
        func y(_ value: Double) -> Double { bottom - yAxis.fraction(value) * (bottom - top) }

        var out = "<g class=\"panel\" id=\"panel-\(index + 1)\">\n"
        out += "<text x=\"\(n(left))\" y=\"44\" font-size=\"13\" font-weight=\"bold\">\(escape(title))</text>\n"
        for t in yAxis.ticks {
            let ty = n(y(t))
            out += "<line x1=\"\(n(left))\" y1=\"\(ty)\" x2=\"\(n(right))\" y2=\"\(ty)\" stroke=\"#e5e5e5\"/>\n"
            out += "<line x1=\"\(n(left - 5))\" y1=\"\(ty)\" x2=\"\(n(left))\" y2=\"\(ty)\" stroke=\"#000000\"/>\n"
            out += "<text x=\"\(n(left - 8))\" y=\"\(n(y(t) + 4))\" text-anchor=\"end\">\(yAxis.label(t))</text>\n"
        }
        for t in xAxis.ticks {
            let tx = n(x(t))
            out += "<line x1=\"\(tx)\" y1=\"\(n(bottom))\" x2=\"\(tx)\" y2=\"\(n(bottom + 5))\" stroke=\"#000000\"/>\n"
            out += "<text x=\"\(tx)\" y=\"\(n(bottom + 18))\" text-anchor=\"middle\">\(xAxis.label(t))</text>\n"
        }
        out += "<rect x=\"\(n(left))\" y=\"\(n(top))\" width=\"\(n(right - left))\" height=\"\(n(bottom - top))\" fill=\"none\" stroke=\"#000000\"/>\n"
        out += "<text x=\"\(n((left + right) / 2))\" y=\"\(n(bottom + 38))\" text-anchor=\"middle\">epoch</text>\n"
        out += "<text transform=\"translate(\(n(dx + 16)),\(n((top + bottom) / 2))) rotate(-90)\" text-anchor=\"middle\">\(escape(yLabel))</text>\n"

        if let best {
            let bx = n(x(Double(best)))
            out += "<line class=\"best\" x1=\"\(bx)\" y1=\"\(n(top))\" x2=\"\(bx)\" y2=\"\(n(bottom))\" stroke=\"#555555\" stroke-dasharray=\"4 3\"/>\n"
            out += "<text class=\"best\" x=\"\(n(x(Double(best)) + 4))\" y=\"\(n(bottom - 6))\" fill=\"#555555\">best</text>\n"
        }
        for (k, s) in series.enumerated() {
            for run in finiteRuns(s.points) where run.count > 1 {
                let points = run.map { "\(n(x(Double($0.epoch)))),\(n(y($0.value)))" }.joined(separator: " ")
                out += "<polyline class=\"\(s.className)\" points=\"\(points)\" fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2\" stroke-linejoin=\"round\"/>\n"
            }
            for p in s.points {
                guard let v = p.value else { continue }
                if v.isFinite {
                    let ring = p.epoch == best && s.className == bestSeries
                    out += "<circle class=\"\(s.className)\" cx=\"\(n(x(Double(p.epoch))))\" cy=\"\(n(y(v)))\" r=\"\(ring ? "5" : "2.5")\" "
                    out += ring ? "fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2\"/>\n" : "fill=\"\(s.color)\"/>\n"
                } else {
                    out += "<text class=\"not-finite \(s.className)\" x=\"\(n(x(Double(p.epoch))))\" y=\"\(n(top + 14 + 12 * Double(k)))\" text-anchor=\"middle\" fill=\"\(s.color)\">×"
                    out += "<title>epoch \(p.epoch): \(escape(s.name)) is \(MetricsCSV.format(v))</title></text>\n"
                }
            }
        }
        // legend: its own row above the plot (a long panel title would overlap it), right-aligned
        var at = right
        for s in series.reversed() {
            let textWidth = Double(s.label.count) * 7 + 6
            at -= textWidth
            out += "<text x=\"\(n(at))\" y=\"60\">\(escape(s.label))</text>\n"
            out += "<line x1=\"\(n(at - 22))\" y1=\"56\" x2=\"\(n(at - 4))\" y2=\"56\" stroke=\"\(s.color)\" stroke-width=\"2\"/>\n"
            at -= 34
        }
        out += "</g>\n"
        return out
    }

    /// The maximal runs of consecutive finite values; nil and non-finite values split them.
    static func finiteRuns(_ points: [(epoch: Int, value: Double?)]) -> [[(epoch: Int, value: Double)]] {
        var runs: [[(epoch: Int, value: Double)]] = []
        var current: [(epoch: Int, value: Double)] = []
        for p in points {
            if let v = p.value, v.isFinite {
                current.append((p.epoch, v))
            } else if !current.isEmpty {
                runs.append(current)
                current = []
            }
        }
        if !current.isEmpty { runs.append(current) }
        return runs
    }

    /// A coordinate: two decimals at most, trailing zeros dropped (`64`, `272.5`).
    static func n(_ x: Double) -> String {
        var s = fixed(x, 2)
        if s.contains(".") {
            while s.hasSuffix("0") { s.removeLast() }
            if s.hasSuffix(".") { s.removeLast() }
        }
        return s
    }

    /// `x` with exactly `decimals` decimals, rounded half away from zero, never `-0`; values too
    /// large for that fall back to Swift's shortest form.
    static func fixed(_ x: Double, _ decimals: Int) -> String {
        guard x.isFinite else { return MetricsCSV.format(x) }
        var scale = 1.0
        for _ in 0 ..< decimals { scale *= 10 }
        let scaled = (abs(x) * scale).rounded(.toNearestOrAwayFromZero)
        guard scaled < 9e15 else { return x.description }
        let digits = String(Int64(scaled))
        let sign = x < 0 && scaled != 0 ? "-" : ""
        guard decimals > 0 else { return sign + digits }
        let padded = String(repeating: "0", count: max(0, decimals + 1 - digits.count)) + digits
        let point = padded.index(padded.endIndex, offsetBy: -decimals)
        return sign + padded[..<point] + "." + padded[point...]
    }

    /// `text` safe inside XML character data and attribute values: markup characters escaped,
    /// characters XML 1.0 forbids (controls other than tab, newline, return) replaced by U+FFFD.
    static func escape(_ text: String) -> String {
        var out = ""
        for u in text.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case "\t", "\n", "\r": out.unicodeScalars.append(u)
            default:
                if u.value < 0x20 || u.value == 0xFFFE || u.value == 0xFFFF {
                    out += "\u{FFFD}"
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out
    }
}

extension CurvesSVG {
    /// A linear axis from `lo` to `hi` with ticks on multiples of `step` (1, 2 or 5 × 10^k).
    struct Axis {
        var lo: Double
        var hi: Double
        var step: Double
        /// Decimals that print every tick exactly (0 for a step of 1 or more).
        var decimals: Int

        /// Where `v` lies between `lo` (0) and `hi` (1).
        func fraction(_ v: Double) -> Double { hi > lo ? (v - lo) / (hi - lo) : 0.5 }

        /// The tick values: the multiples of `step` from `lo` to `hi`.
        var ticks: [Double] {
            let first = (lo / step - 1e-9).rounded(.up), last = (hi / step + 1e-9).rounded(.down)
            guard first <= last, last - first <= 50 else { return [lo, hi] }
            return stride(from: first, through: last, by: 1).map { $0 * step }
        }

        /// A tick's label.
        func label(_ v: Double) -> String { CurvesSVG.fixed(v, decimals) }

        /// The x axis: exactly the first to the last epoch (one epoch: a step either side), ticks
        /// on whole epochs.
        static func epochs(_ epochs: [Int]) -> Axis {
            guard let first = epochs.first, let last = epochs.last else { return nice(lo: 0, hi: 1, integer: true, extend: false) }
            let lo = Double(first), hi = Double(last)
            return lo < hi ? nice(lo: lo, hi: hi, integer: true, extend: false) : nice(lo: lo - 1, hi: hi + 1, integer: true, extend: false)
        }

        /// A y axis holding every finite value of `series`, widened to whole ticks; kept within
        /// [0, 1] when `unitInterval` and the values are (accuracies, mIoU).
        static func values(_ series: [Series], unitInterval: Bool) -> Axis {
            let values = series.flatMap { $0.points.compactMap(\.value) }.filter(\.isFinite)
            guard var lo = values.min(), var hi = values.max() else { return nice(lo: 0, hi: 1, integer: false, extend: true) }
            let inUnit = unitInterval && lo >= 0 && hi <= 1
            if hi - lo <= abs(hi) * 1e-12 {
                let pad = lo == 0 ? 1 : abs(lo) * 0.1
                lo -= pad
                hi += pad
            }
            if inUnit {
                lo = max(lo, 0)
                hi = min(hi, 1)
            }
            return nice(lo: lo, hi: hi, integer: false, extend: true)
        }

        /// About five ticks over [lo, hi] on a 1-2-5 step; `extend` widens the ends to ticks.
        static func nice(lo: Double, hi: Double, integer: Bool, extend: Bool) -> Axis {
            let raw = (hi - lo) / 5
            guard raw.isFinite, raw > 0 else { return Axis(lo: lo, hi: hi.isFinite && hi > lo ? hi : lo + 1, step: 1, decimals: 0) }
            var exponent = Int(log10(raw).rounded(.down))
            let mantissa = raw / pow(10, Double(exponent))
            let niceMantissa: Double
            switch mantissa {
            case ...1: niceMantissa = 1
            case ...2: niceMantissa = 2
            case ...5: niceMantissa = 5
            default:
                niceMantissa = 1
                exponent += 1
            }
            var step = niceMantissa * pow(10, Double(exponent))
            if integer && step < 1 {
                step = 1
                exponent = 0
            }
            let decimals = max(0, -exponent)
            guard extend else { return Axis(lo: lo, hi: hi, step: step, decimals: decimals) }
            return Axis(lo: (lo / step + 1e-9).rounded(.down) * step, hi: (hi / step - 1e-9).rounded(.up) * step,
                        step: step, decimals: decimals)
        }
    }
}
