// The bytes of TensorBoard event files: `tensorflow.Event` protocol buffers (tensorboard's
// `compat/proto/event.proto`, `summary.proto`, proto3) in TFRecord framing. Only what scalar
// logging needs is encoded, by hand, exactly as Python's protobuf serialises it: fields in
// field-number order, proto3 defaults (a zero step or wall time) left out, `simple_value` always
// written (it sits in a `oneof`, so a 0.0 is kept).
//
//     Event   { double wall_time = 1; int64 step = 2; string file_version = 3;
//               Summary summary = 5; SourceMetadata source_metadata = 10; }
//     Summary { repeated Value value = 1; }
//     Value   { string tag = 1; float simple_value = 2; }
//     SourceMetadata { string writer = 1; }
//
// A record is `uint64 length, uint32 masked_crc32c(length bytes), data, uint32 masked_crc32c(data)`,
// little-endian (tensorboard's `summary/writer/record_writer.py`).

/// A minimal protocol-buffer encoder: varints, fixed64 doubles, fixed32 floats and
/// length-delimited fields, appended in the order they are called.
struct ProtobufWriter {
    /// The message so far.
    private(set) var bytes: [UInt8] = []

    /// The wire types used here.
    enum WireType: UInt8 {
        case varint = 0
        case fixed64 = 1
        case lengthDelimited = 2
        case fixed32 = 5
    }

    /// Appends `value` as a base-128 varint, low group first.
    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Appends a field key: `field << 3 | wire type`.
    mutating func key(_ field: Int, _ type: WireType) {
        varint(UInt64(field) << 3 | UInt64(type.rawValue))
    }

    /// An `int64` field (negative values take ten bytes, as protobuf's two's complement does).
    mutating func int64(_ field: Int, _ value: Int64) {
        key(field, .varint)
        varint(UInt64(bitPattern: value))
    }

    /// A `double` field, little-endian fixed64.
    mutating func double(_ field: Int, _ value: Double) {
        key(field, .fixed64)
        littleEndian(value.bitPattern)
    }

    /// A `float` field, little-endian fixed32.
    mutating func float(_ field: Int, _ value: Float) {
        key(field, .fixed32)
        littleEndian(value.bitPattern)
    }

    /// A length-delimited field holding `payload` (a string's UTF-8 or an embedded message).
    mutating func lengthDelimited(_ field: Int, _ payload: [UInt8]) {
        key(field, .lengthDelimited)
        varint(UInt64(payload.count))
        bytes += payload
    }

    /// A `string` field.
    mutating func string(_ field: Int, _ value: String) {
        lengthDelimited(field, Array(value.utf8))
    }

    private mutating func littleEndian<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }
}

/// Encodes the events ckpt writes and frames them as TFRecords.
///
/// Python counterpart: `event_pb2.Event(...).SerializeToString()` and
/// `tensorboard.summary.writer.record_writer.RecordWriter.write`.
public enum TensorBoardEvent {
    /// The `file_version` of the first event of every file.
    public static let fileVersion = "brain.Event:2"
    /// The `source_metadata.writer` tensorboard's `EventFileWriter` (behind torch's
    /// `SummaryWriter`) puts in that event; ckpt writes the same, so its files match torch's.
    public static let sourceWriter = "tensorboard.summary.writer.event_file_writer"

    /// The first event of a file: `Event{wall_time, file_version, source_metadata{writer}}`.
    public static func fileVersionEvent(wallTime: Double) -> [UInt8] {
        var source = ProtobufWriter()
        source.string(1, sourceWriter)
        var event = ProtobufWriter()
        if wallTime.bitPattern != 0 { event.double(1, wallTime) }
        event.string(3, fileVersion)
        event.lengthDelimited(10, source.bytes)
        return event.bytes
    }

    /// A scalar: `Event{wall_time, step, summary{value{tag, simple_value}}}`, the value rounded
    /// to float as `add_scalar` stores it (`simple_value` is a float). PyTorch counterpart:
    /// `SummaryWriter.add_scalar(tag, value, step, walltime)`.
    public static func scalarEvent(tag: String, value: Double, step: Int64, wallTime: Double) -> [UInt8] {
        var summaryValue = ProtobufWriter()
        summaryValue.string(1, tag)
        summaryValue.float(2, Float(value))
        var summary = ProtobufWriter()
        summary.lengthDelimited(1, summaryValue.bytes)
        var event = ProtobufWriter()
        if wallTime.bitPattern != 0 { event.double(1, wallTime) }
        if step != 0 { event.int64(2, step) }
        event.lengthDelimited(5, summary.bytes)
        return event.bytes
    }

    /// `data` framed as a TFRecord: length, its masked CRC-32C, the data, the data's masked CRC-32C.
    public static func record(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 16)
        let length = UInt64(data.count).littleEndian
        withUnsafeBytes(of: length) { out += $0 }
        let lengthCRC = CRC32C.maskedChecksum(out).littleEndian
        withUnsafeBytes(of: lengthCRC) { out += $0 }
        out += data
        let dataCRC = CRC32C.maskedChecksum(data).littleEndian
        withUnsafeBytes(of: dataCRC) { out += $0 }
        return out
    }

    /// The scalars of one epoch, tagged as the tutorials log them: `Loss/train`, `Loss/val`,
    /// `Accuracy/train`, `Accuracy/val`, `mIoU/val` (segmentation), `LearningRate`. Values not
    /// measured (no validation set) are left out; non-finite ones are kept (TensorBoard shows them).
    public static func scalars(of metrics: EpochMetrics, task: TrainingTask) -> [(tag: String, value: Double)] {
        var out: [(tag: String, value: Double)] = [("Loss/train", metrics.trainLoss)]
        if let v = metrics.validationLoss { out.append(("Loss/val", v)) }
        out.append(("Accuracy/train", metrics.trainAccuracy))
        if let v = metrics.validationAccuracy { out.append(("Accuracy/val", v)) }
        if task == .segmentation, let v = metrics.validationMeanIoU { out.append(("mIoU/val", v)) }
        out.append(("LearningRate", metrics.learningRate))
        return out
    }
}
