extension LabelMap {
    /// This map as an 8-bit grey PNG, one byte per pixel holding its class index (`name` is used
    /// in errors). `ImageDecoder.labelMap` and PIL's `np.array(Image.open(f))` read the same
    /// values back.
    /// PIL counterpart: `Image.fromarray(mask.astype(np.uint8), mode="L").save(f)`.
    /// - Throws: `DataError.io` when libpng fails.
    public func pngBytes(name: String = "<mask>") throws -> [UInt8] {
        try PNGEncoder.grey(width: width, height: height, pixels: labels, file: name)
    }
}
