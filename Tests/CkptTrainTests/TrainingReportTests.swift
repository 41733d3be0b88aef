import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
@testable import CkptTrain

/// The reports of `ckpt finetune`: CRC-32C, TensorBoard event files (against bytes torch wrote,
/// and read back field by field), the metrics CSV and the curves SVG.
///
/// `CKPT_TRAIN_REPORT_DIR=/tmp/ckpt-reports` makes `testReportsOfARunAreWrittenAfterEveryEpoch`
/// leave its files there for `fixtures/train/check_tensorboard.py`.
final class TrainingReportTests: XCTestCase {
    // MARK: CRC-32C

    func testCRC32CMatchesTheStandardVectors() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
        // RFC 3720 appendix B.4
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0 ..< 32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum((0 ..< 32).reversed().map { UInt8($0) }), 0x113F_DB5C)
        // RFC 3720 B.4's SCSI Read (10) command PDU
        let readPDU = hexBytes("01c00000 00000000 00000000 00000000 14000000 00000400 00000014 00000018 28000000 00000000 02000000 00000000")
        XCTAssertEqual(readPDU.count, 48)
        XCTAssertEqual(CRC32C.checksum(readPDU), 0xD996_3A56)
        XCTAssertEqual(CRC32C.table.count, 256)
        XCTAssertEqual(CRC32C.table[1], 0xF26B_8303)
        XCTAssertEqual(CRC32C.table[128], CRC32C.polynomial)
        // split updates continue the same checksum
        var crc = CRC32C()
        crc.update(Array("1234".utf8))
        crc.update(Array("56789".utf8))
        XCTAssertEqual(crc.value, 0xE306_9283)
    }

    func testMaskedCRCIsTensorFlows() {
        // values from tensorboard.compat.tensorflow_stub.pywrap_tensorflow.masked_crc32c
        XCTAssertEqual(CRC32C.maskedChecksum(Array("123456789".utf8)), 0xC78A_B0E5)
        XCTAssertEqual(CRC32C.maskedChecksum([UInt8]()), 0xA282_EAD8)
        XCTAssertEqual(CRC32C.mask(0xE306_9283), ((0xE306_9283 >> 15) | (0xE306_9283 << 17 & 0xFFFF_FFFF)) &+ 0xA282_EAD8)
        for crc: UInt32 in [0, 1, 0xE306_9283, 0xFFFF_FFFF, 0x5D82_EAD7] {
            XCTAssertEqual(CRC32C.unmask(CRC32C.mask(crc)), crc)
        }
        // the header of the first record torch wrote: length 72, then its masked CRC
        let golden = fixture("tensorboard_scalars.tfevents")
        XCTAssertEqual(CRC32C.maskedChecksum(golden[0 ..< 8]), le32(golden, 8))
    }

    // MARK: TensorBoard

    /// The two epochs `fixtures/train/generate_tensorboard.py` logs through torch's SummaryWriter.
    static let goldenEpochs: [(EpochMetrics, wallTime: Double)] = [
        (EpochMetrics(epoch: 1, trainLoss: 2.302585092994046, trainAccuracy: 0, validationLoss: 1.9, validationAccuracy: 0.4375,
                      validationMeanIoU: 0.123456789, learningRate: 0.01, imagesPerSecond: 50, seconds: 12), 1_700_000_012.5),
        (EpochMetrics(epoch: 300, trainLoss: .nan, trainAccuracy: 0.875, validationLoss: 0.6931471805599453, validationAccuracy: 0.8125,
                      validationMeanIoU: 0.5, learningRate: 1e-05, imagesPerSecond: 50, seconds: 12), 1_700_003_600.125),
    ]

    func testEventFileIsByteForByteTorchs() throws {
        let dir = try temporaryDirectory()
        let writer = try TensorBoardWriter(directory: dir + "/logs", wallTime: 1_700_000_000.25, hostname: "vm")
        for (epoch, wallTime) in Self.goldenEpochs { try writer.add(epoch, task: .segmentation, wallTime: wallTime) }
        try writer.close()
        XCTAssertEqual(writer.path, dir + "/logs/events.out.tfevents.1700000000.vm.\(getpid()).0")
        let ours = try [UInt8](Data(contentsOf: URL(fileURLWithPath: writer.path)))
        let torchs = fixture("tensorboard_scalars.tfevents")
        XCTAssertEqual(ours.count, 678)
        XCTAssertEqual(ours, torchs, "first difference at byte \((0 ..< min(ours.count, torchs.count)).first { ours[$0] != torchs[$0] } ?? min(ours.count, torchs.count))")
        // a second writer in the same directory and second gets the next number
        let second = try TensorBoardWriter(directory: dir + "/logs", wallTime: 1_700_000_000.75, hostname: "vm", filenameSuffix: ".b")
        XCTAssertEqual(second.path, dir + "/logs/events.out.tfevents.1700000000.vm.\(getpid()).0.b")
        let third = try TensorBoardWriter(directory: dir + "/logs", wallTime: 1_700_000_000.75, hostname: "vm")
        XCTAssertEqual(third.path, dir + "/logs/events.out.tfevents.1700000000.vm.\(getpid()).1")
        try second.close()
        try third.close()
        XCTAssertThrowsError(try third.add(Self.goldenEpochs[0].0, task: .segmentation)) { error in
            XCTAssertEqual((error as? ReportError)?.kind, .io)
        }
    }

    func testEventFileReadsBackWithEveryScalar() throws {
        let dir = try temporaryDirectory()
        let writer = try TensorBoardWriter(directory: dir, wallTime: 1_800_000_000.5)
        let epochs = sampleClassification().epochs
        for (i, e) in epochs.enumerated() { try writer.add(e, task: .classification, wallTime: 1_800_000_010 + Double(i)) }
        writer.addScalar(tag: "Custom/zero-step ü", value: -3.5, step: 0, wallTime: 1_800_000_100)
        try writer.close()

        let events = try readEvents(try [UInt8](Data(contentsOf: URL(fileURLWithPath: writer.path))))
        XCTAssertEqual(events.first?.fileVersion, "brain.Event:2")
        XCTAssertEqual(events.first?.writer, "tensorboard.summary.writer.event_file_writer")
        XCTAssertEqual(events.first?.wallTime, 1_800_000_000.5)
        XCTAssertEqual(events.count, 1 + 5 + 5 + 3 + 1, "epochs 1 and 2 have 5 scalars, epoch 3 (no validation) 3, then the custom one")
        var found: [String: [(Int64, Float, Double)]] = [:]
        for e in events.dropFirst() {
            XCTAssertNil(e.fileVersion)
            XCTAssertEqual(e.values.count, 1)
            for v in e.values { found[v.tag, default: []].append((e.step, v.value, e.wallTime ?? -1)) }
        }
        XCTAssertEqual(Set(found.keys), ["Loss/train", "Loss/val", "Accuracy/train", "Accuracy/val", "LearningRate", "Custom/zero-step ü"])
        for (i, e) in epochs.enumerated() {
            for (tag, value) in TensorBoardEvent.scalars(of: e, task: .classification) {
                let hit = found[tag]?.first { $0.0 == Int64(e.epoch) }
                XCTAssertEqual(hit?.1.bitPattern, Float(value).bitPattern, "\(tag) at epoch \(e.epoch)")
                XCTAssertEqual(hit?.2, 1_800_000_010 + Double(i))
            }
        }
        XCTAssertEqual(found["Loss/train"]?.map(\.1.isNaN), [false, true, false])
        XCTAssertEqual(found["Custom/zero-step ü"]?.first?.0, 0)
        XCTAssertEqual(found["Custom/zero-step ü"]?.first?.1, -3.5)
        XCTAssertEqual(found["Loss/val"]?.count, 2)
    }

    func testScalarEventEncodingDropsProto3Defaults() {
        let event = TensorBoardEvent.scalarEvent(tag: "a", value: 0, step: 0, wallTime: 0)
        // Event{summary(5){value(1){tag(1) "a", simple_value(2) 0.0}}}
        XCTAssertEqual(event, [0x2A, 0x0A, 0x0A, 0x08, 0x0A, 0x01, 0x61, 0x15, 0, 0, 0, 0])
        var proto = ProtobufWriter()
        proto.int64(2, -1)
        XCTAssertEqual(proto.bytes, [0x10] + [UInt8](repeating: 0xFF, count: 9) + [0x01])
    }

    // MARK: CSV

    func testMetricsCSVIsExact() throws {
        let csv = MetricsCSV.render(sampleClassification())
        XCTAssertEqual(csv, """
            epoch,stage,train_loss,train_accuracy,val_loss,val_accuracy,learning_rate,images_per_second,seconds
            1,1,2.302585092994046,0.1,1.9,0.4375,0.01,123.5,12.25
            2,1,nan,0.5,inf,0.0,0.001,1000.0,8.0
            3,1,0.1,0.9999999999999999,,,1e-05,1e+20,0.3333333333333333

            """)
        let segmentation = try TrainingLog(task: .segmentation, epochs: [
            EpochMetrics(epoch: 7, trainLoss: 0.5, trainAccuracy: 0.75, validationLoss: 0.625, validationAccuracy: 0.5,
                         validationMeanIoU: 0.123456789, learningRate: 0.1, imagesPerSecond: 3, seconds: 60),
        ])
        XCTAssertEqual(MetricsCSV.render(segmentation), """
            epoch,stage,train_loss,train_accuracy,val_loss,val_accuracy,val_miou,learning_rate,images_per_second,seconds
            7,1,0.5,0.75,0.625,0.5,0.123456789,0.1,3.0,60.0

            """)
        // read back bit for bit
        for log in [sampleClassification(), segmentation] {
            let back = try MetricsCSV.parse(MetricsCSV.render(log), file: "run.metrics.csv")
            XCTAssertEqual(back.task, log.task)
            XCTAssertEqual(MetricsCSV.render(back), MetricsCSV.render(log))
            XCTAssertEqual(back.epochs.map(\.trainAccuracy.bitPattern), log.epochs.map(\.trainAccuracy.bitPattern))
        }
    }

    func testMetricsCSVErrorsNameFileLineAndColumn() {
        func message(_ text: String) -> String {
            do {
                _ = try MetricsCSV.parse(text, file: "run.metrics.csv")
                return "no error"
            } catch {
                return String(describing: error)
            }
        }
        let header = MetricsCSV.columns(for: .classification).joined(separator: ",")
        XCTAssertEqual(message(""), "run.metrics.csv: empty; expected a header line")
        XCTAssertEqual(message("epoch,loss\n"), "run.metrics.csv: line 1: expected the header '\(header)' (val_miou after val_accuracy for segmentation), got 'epoch,loss'")
        XCTAssertEqual(message(header + "\n1,1,abc,0.5,,,0.1,1,1\n"), "run.metrics.csv: line 2: column train_loss: expected a number, got 'abc'")
        XCTAssertEqual(message(header + "\n1,0.5,0.5\n"), "run.metrics.csv: line 2: expected 9 cells, got 3")
        XCTAssertEqual(message(header + "\n2,1,1,1,,,1,1,1\n2,1,1,1,,,1,1,1\n"),
                       "training log: epoch 2 comes after epoch 2; expected epoch numbers to increase")
        XCTAssertEqual(message(header + "\n1,0,1,1,,,1,1,1\n"), "run.metrics.csv: line 2: column stage: expected a positive integer, got '0'")
        var log = TrainingLog(task: .classification)
        XCTAssertThrowsError(try log.append(EpochMetrics(epoch: 1, trainLoss: 1, trainAccuracy: 1, validationMeanIoU: 0.5,
                                                         learningRate: 1, imagesPerSecond: 1, seconds: 1)))
    }

    // MARK: SVG

    func testCurvesSVGDrawsTheValuesOnTheAxes() throws {
        let log = try TrainingLog(task: .classification, epochs: [
            metrics(1, loss: 2, accuracy: 0.25, valLoss: 1.5, valAccuracy: 0.5),
            metrics(2, loss: 1, accuracy: 0.5, valLoss: .nan, valAccuracy: 0.6),
            metrics(3, loss: 0.5, accuracy: 0.75, valLoss: 0.75, valAccuracy: 0.7),
        ])
        let svg = CurvesSVG.render(log, title: "resnet18 <run & \"1\">")
        XCTAssertEqual(svg, CurvesSVG.render(log, title: "resnet18 <run & \"1\">"), "deterministic")
        let doc = try parseXML(svg)
        XCTAssertEqual(doc.first?.name, "svg")
        XCTAssertEqual(doc.first?.attributes["viewBox"], "0 0 960 420")
        XCTAssertEqual(doc.first { $0.name == "title" }?.text, "resnet18 <run & \"1\">")
        func polylines(_ className: String) -> [String] {
            doc.filter { $0.name == "polyline" && $0.attributes["class"] == className }.compactMap { $0.attributes["points"] }
        }
        // loss axis 0.5…2 over y 340…70, epochs 1…3 over x 64…450 (panel 2: +480)
        XCTAssertEqual(polylines("loss-train"), ["64,70 257,250 450,340"])
        XCTAssertEqual(polylines("loss-val"), [], "the NaN at epoch 2 leaves two single points")
        XCTAssertEqual(doc.filter { $0.name == "circle" && $0.attributes["class"] == "loss-val" }.map { "\($0.attributes["cx"] ?? ""),\($0.attributes["cy"] ?? "")" },
                       ["64,160", "450,295"])
        // accuracy axis 0.2…0.8
        XCTAssertEqual(polylines("accuracy-train"), ["544,317.5 737,205 930,92.5"])
        XCTAssertEqual(polylines("accuracy-val"), ["544,205 737,160 930,115"])
        let diverged = doc.filter { $0.name == "text" && $0.attributes["class"] == "not-finite loss-val" }
        XCTAssertEqual(diverged.map { $0.attributes["x"] }, ["257"])
        XCTAssertTrue(doc.contains { $0.name == "title" && $0.text == "epoch 2: val loss is nan" })
        // best epoch: the highest val accuracy, epoch 3, ringed and marked in both panels
        XCTAssertEqual(doc.filter { $0.name == "line" && $0.attributes["class"] == "best" }.map { $0.attributes["x1"] }, ["450", "930"])
        XCTAssertTrue(doc.contains { $0.name == "circle" && $0.attributes["class"] == "accuracy-val" && $0.attributes["r"] == "5" && $0.attributes["cx"] == "930" })
        XCTAssertEqual(doc.first { $0.attributes["class"] == "best-note" }?.text, "best epoch 3: val accuracy 0.7000, val loss 0.7500")
        // tick labels print their step's decimals
        let labels = doc.filter { $0.name == "text" && $0.attributes["text-anchor"] == "end" }.map(\.text)
        XCTAssertEqual(labels, ["0.5", "1.0", "1.5", "2.0", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8"])
        XCTAssertFalse(svg.contains("nan,") || svg.contains(",nan") || svg.contains("inf"), "no non-finite coordinate")
    }

    func testCurvesSVGSurvivesDivergedEmptyAndSegmentationRuns() throws {
        let diverged = try TrainingLog(task: .segmentation, epochs: [
            EpochMetrics(epoch: 1, trainLoss: .nan, trainAccuracy: .nan, validationLoss: .infinity, validationAccuracy: -.infinity,
                         validationMeanIoU: .nan, learningRate: 0.1, imagesPerSecond: 1, seconds: 1),
            EpochMetrics(epoch: 2, trainLoss: 1, trainAccuracy: 0.5, validationLoss: 1, validationAccuracy: 0.5,
                         validationMeanIoU: 0.25, learningRate: 0.1, imagesPerSecond: 1, seconds: 1),
            EpochMetrics(epoch: 3, trainLoss: .nan, trainAccuracy: 1, validationLoss: 1, validationAccuracy: 1,
                         validationMeanIoU: 0.25, learningRate: 0.1, imagesPerSecond: 1, seconds: 1),
        ])
        for log in [diverged, TrainingLog(task: .classification), TrainingLog(task: .segmentation)] {
            let svg = CurvesSVG.render(log, title: "t\u{1}")
            let doc = try parseXML(svg)
            XCTAssertEqual(doc.first?.name, "svg")
            XCTAssertFalse(svg.contains("nan\"") || svg.contains("inf\""), "no non-finite attribute")
        }
        let doc = try parseXML(CurvesSVG.render(diverged, title: "segnet"))
        XCTAssertEqual(doc.filter { $0.name == "polyline" && $0.attributes["class"] == "miou-val" }.count, 1)
        XCTAssertEqual(doc.filter { $0.name == "text" && ($0.attributes["class"] ?? "").hasPrefix("not-finite") }.count, 6)
        XCTAssertEqual(doc.first { $0.attributes["class"] == "best-note" }?.text, "best epoch 2: val mIoU 0.2500, val loss 1.0000")
        XCTAssertEqual(CurvesSVG.fixed(-0.0001, 2), "0.00")
        XCTAssertEqual(CurvesSVG.fixed(2.345, 1), "2.3")
        XCTAssertEqual(CurvesSVG.fixed(-12.5, 0), "-13")
        XCTAssertEqual(CurvesSVG.fixed(0.05, 3), "0.050")
    }

    func testCurvesSVGOfALongSegmentationRun() throws {
        var log = TrainingLog(task: .segmentation)
        for e in 1 ... 40 {
            let t = Double(e)
            try log.append(EpochMetrics(epoch: e, trainLoss: 2.3 * exp(-t / 8) + 0.2, trainAccuracy: 1 - 0.9 * exp(-t / 7),
                                        validationLoss: e == 23 ? .nan : 2.3 * exp(-t / 9) + 0.35 + 0.02 * sin(t),
                                        validationAccuracy: 0.95 - 0.85 * exp(-t / 8), validationMeanIoU: 0.7 * (1 - exp(-t / 10)) - 0.002 * max(0, t - 30),
                                        learningRate: 0.01 * pow(0.5, Double(e / 10)), imagesPerSecond: 40, seconds: 30))
        }
        let svg = CurvesSVG.render(log, title: "segnet on camvid")
        if let dir = ProcessInfo.processInfo.environment["CKPT_TRAIN_REPORT_DIR"] {
            try CurvesSVG.write(log, title: "segnet on camvid", to: dir + "/segnet.curves.svg")
        }
        let doc = try parseXML(svg)
        let xLabels = doc.filter { $0.name == "text" && $0.attributes["text-anchor"] == "middle" && $0.attributes["y"] == "358" }.map(\.text)
        XCTAssertEqual(xLabels, ["10", "20", "30", "40", "10", "20", "30", "40"])
        XCTAssertEqual(doc.filter { $0.name == "polyline" && $0.attributes["class"] == "loss-val" }.map { $0.attributes["points"]?.split(separator: " ").count }, [22, 17])
        XCTAssertEqual(log.bestEpoch?.epoch, 36)
        XCTAssertEqual(doc.filter { $0.name == "line" && $0.attributes["class"] == "best" }.map { $0.attributes["x1"] }, ["410.41", "890.41"])
    }

    // MARK: all three, epoch by epoch

    func testReportsOfARunAreWrittenAfterEveryEpoch() throws {
        let dir = try ProcessInfo.processInfo.environment["CKPT_TRAIN_REPORT_DIR"] ?? temporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tensorBoard = dir + "/run.tensorboard"
        try? FileManager.default.removeItem(atPath: tensorBoard)
        let reports = try TrainingReports(stem: dir + "/run", log: TrainingLog(task: .classification), tensorBoardDirectory: tensorBoard)
        let eventFile = try XCTUnwrap(reports.tensorBoard?.path)
        var previous = try [UInt8](Data(contentsOf: URL(fileURLWithPath: eventFile)))
        for e in sampleClassification().epochs {
            try reports.record(e)
            XCTAssertEqual(try String(contentsOfFile: reports.metricsPath, encoding: .utf8), MetricsCSV.render(reports.log))
            XCTAssertEqual(try String(contentsOfFile: reports.curvesPath, encoding: .utf8), CurvesSVG.render(reports.log, title: "run"))
            let now = try [UInt8](Data(contentsOf: URL(fileURLWithPath: eventFile)))
            XCTAssertGreaterThan(now.count, previous.count)
            XCTAssertEqual(Array(now.prefix(previous.count)), previous, "appended, not rewritten")
            previous = now
        }
        XCTAssertThrowsError(try reports.record(sampleClassification().epochs[0])) { error in
            XCTAssertEqual((error as? ReportError)?.kind, .invalidMetrics)
        }
        XCTAssertEqual(reports.log.epochs.count, 3)
        try reports.close()
        XCTAssertEqual(try readEvents(previous).count, 1 + 5 + 5 + 3)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".tmp-") }
        XCTAssertEqual(leftovers, [])
    }

    func testReportWriteFailuresNameTheFile() throws {
        let dir = try temporaryDirectory()
        func message(_ body: () throws -> Void) -> String {
            do {
                try body()
                return "no error"
            } catch {
                return String(describing: error)
            }
        }
        let log = sampleClassification()
        XCTAssertEqual(message { try MetricsCSV.write(log, to: dir + "/missing/run.metrics.csv") },
                       "\(dir)/missing/run.metrics.csv: cannot create a temporary file in \(dir)/missing: no such file or directory")
        try FileManager.default.createDirectory(atPath: dir + "/run.curves.svg", withIntermediateDirectories: false)
        XCTAssertEqual(message { try CurvesSVG.write(log, title: "run", to: dir + "/run.curves.svg") },
                       "\(dir)/run.curves.svg: cannot rename the temporary file over it: is a directory")
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/file"))
        XCTAssertEqual(message { _ = try TensorBoardWriter(directory: dir + "/file/logs") },
                       "\(dir)/file/logs: \(dir)/file exists and is not a directory; expected a directory for the event files")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["file", "run.curves.svg"], "no temporary file left")
    }

    // MARK: helpers

    func sampleClassification() -> TrainingLog {
        let epochs = [
            EpochMetrics(epoch: 1, trainLoss: 2.302585092994046, trainAccuracy: 0.1, validationLoss: 1.9, validationAccuracy: 0.4375,
                         learningRate: 0.01, imagesPerSecond: 123.5, seconds: 12.25),
            EpochMetrics(epoch: 2, trainLoss: .nan, trainAccuracy: 0.5, validationLoss: .infinity, validationAccuracy: 0,
                         learningRate: 0.001, imagesPerSecond: 1000, seconds: 8),
            EpochMetrics(epoch: 3, trainLoss: 0.1, trainAccuracy: 0.9999999999999999, learningRate: 1e-05,
                         imagesPerSecond: 1e20, seconds: 1.0 / 3),
        ]
        var log = TrainingLog(task: .classification)
        for e in epochs { try? log.append(e) }
        return log
    }

    func metrics(_ epoch: Int, loss: Double, accuracy: Double, valLoss: Double, valAccuracy: Double) -> EpochMetrics {
        EpochMetrics(epoch: epoch, trainLoss: loss, trainAccuracy: accuracy, validationLoss: valLoss, validationAccuracy: valAccuracy,
                     learningRate: 0.1, imagesPerSecond: 10, seconds: 1)
    }

    func fixture(_ name: String) -> [UInt8] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures/train/\(name)")
        return (try? [UInt8](Data(contentsOf: url))) ?? []
    }

    func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "ckpt-report-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }
}

func le32<C: Collection>(_ bytes: C, _ at: Int) -> UInt32 where C.Element == UInt8, C.Index == Int {
    (0 ..< 4).reduce(UInt32(0)) { $0 | UInt32(bytes[bytes.startIndex + at + $1]) << (8 * UInt32($1)) }
}
