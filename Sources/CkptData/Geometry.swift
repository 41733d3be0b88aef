// Crops, padding and flips on RasterImage and LabelMap, with torchvision's offsets and rounding.

/// A rectangle of an image in torchvision's order: `top`, `left`, `height`, `width` (the `i, j,
/// h, w` that `RandomResizedCrop.get_params` returns and `F.crop` takes).
public struct CropBox: Sendable, Equatable, CustomStringConvertible {
    /// First row.
    public var top: Int
    /// First column.
    public var left: Int
    /// Rows.
    public var height: Int
    /// Columns.
    public var width: Int

    /// The box `top, left, height, width`.
    public init(top: Int, left: Int, height: Int, width: Int) {
        self.top = top
        self.left = left
        self.height = height
        self.width = width
    }

    /// `top,left heightxwidth`.
    public var description: String { "\(top),\(left) \(height)x\(width)" }

    /// torchvision's `center_crop` for an image of `imageWidth` × `imageHeight`: the box to cut,
    /// in the image's coordinates, which reaches outside (negative `top`/`left`, or past the
    /// far edge) where torchvision pads with zeros first.
    ///
    /// Padding is `(crop - size) // 2` before and `(crop - size + 1) // 2` after; the crop offset
    /// of the (padded) image is `int(round((size - crop) / 2.0))`, Python's round half to even.
    public static func centered(imageWidth: Int, imageHeight: Int, width: Int, height: Int) -> CropBox {
        func axis(_ size: Int, _ crop: Int) -> Int {
            let padBefore = crop > size ? (crop - size) / 2 : 0
            let padAfter = crop > size ? (crop - size + 1) / 2 : 0
            let padded = size + padBefore + padAfter
            let offset = Int((Double(padded - crop) / 2.0).rounded(.toNearestOrEven))
            return offset - padBefore
        }
        // torchvision returns the padded image uncut when it has the crop size; the offsets
        // computed above are then 0 on both axes, the same box
        return CropBox(top: axis(imageHeight, height), left: axis(imageWidth, width), height: height, width: width)
    }
}

extension RasterImage {
    /// The pixels inside `box`; parts of the box outside the image are black.
    /// - Throws: `DataError.invalidArgument` for an empty or oversized box.
    /// PIL counterpart: `image.crop((left, top, left + width, top + height))` (torchvision's `F.crop`).
    public func cropped(_ box: CropBox) throws -> RasterImage {
        guard box.width > 0, box.height > 0, box.width <= maximumImagePixels, box.height <= maximumImagePixels,
              box.width * box.height <= maximumImagePixels else {
            throw DataError(.invalidArgument, file: "<image>", "crop \(box): the box must have a positive size of at most \(maximumImagePixels) pixels")
        }
        if box.top == 0, box.left == 0, box.width == width, box.height == height { return self }
        let c = channels
        var out = [UInt8](repeating: 0, count: box.width * box.height * c)
        let x0 = max(box.left, 0), x1 = min(box.left + box.width, width)
        let y0 = max(box.top, 0), y1 = min(box.top + box.height, height)
        if x0 < x1, y0 < y1 {
            pixels.withUnsafeBufferPointer { p in
                out.withUnsafeMutableBufferPointer { o in
                    guard let pBase = p.baseAddress, let oBase = o.baseAddress else { return }
                    let count = (x1 - x0) * c
                    for y in y0 ..< y1 {
                        let from = pBase + (y * width + x0) * c
                        let to = oBase + ((y - box.top) * box.width + (x0 - box.left)) * c
                        to.update(from: from, count: count)
                    }
                }
            }
        }
        return RasterImage(uncheckedWidth: box.width, height: box.height, channels: c, pixels: out)
    }

    /// The centre `width` × `height` of the image, padded with black where it is smaller.
    /// - Throws: `DataError.invalidArgument` for a size that is not positive.
    /// PyTorch counterpart: `torchvision.transforms.CenterCrop((height, width))` on a PIL image.
    public func centerCropped(width cropWidth: Int, height cropHeight: Int) throws -> RasterImage {
        try cropped(CropBox.centered(imageWidth: width, imageHeight: height, width: cropWidth, height: cropHeight))
    }

    /// The image mirrored left to right.
    /// PyTorch counterpart: `torchvision.transforms.functional.hflip` (PIL's `FLIP_LEFT_RIGHT`).
    public func flippedHorizontally() -> RasterImage {
        let c = channels
        var out = [UInt8](repeating: 0, count: pixels.count)
        pixels.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                for y in 0 ..< height {
                    let row = y * width * c
                    for x in 0 ..< width {
                        let from = row + (width - 1 - x) * c, to = row + x * c
                        for k in 0 ..< c { o[to + k] = p[from + k] }
                    }
                }
            }
        }
        return RasterImage(uncheckedWidth: width, height: height, channels: c, pixels: out)
    }
}

extension LabelMap {
    /// The mask as a one-channel image, sharing its storage, so the image geometry serves both.
    var plane: RasterImage { RasterImage(uncheckedWidth: width, height: height, channels: 1, pixels: labels) }

    init(_ plane: RasterImage) {
        self.init(uncheckedWidth: plane.width, height: plane.height, labels: plane.pixels)
    }

    /// The labels inside `box`; parts outside the mask get `fill`.
    /// - Throws: `DataError.invalidArgument` for an empty or oversized box.
    /// PIL counterpart: `mask.crop(...)`, with PIL's 0 replaced by `fill` (255 is a common ignore index).
    public func cropped(_ box: CropBox, fill: UInt8 = 0) throws -> LabelMap {
        var out = LabelMap(try plane.cropped(box))
        if fill != 0 {
            for y in 0 ..< box.height {
                let sourceY = box.top + y
                for x in 0 ..< box.width {
                    let sourceX = box.left + x
                    if sourceY < 0 || sourceY >= height || sourceX < 0 || sourceX >= width {
                        out.labels[y * box.width + x] = fill
                    }
                }
            }
        }
        return out
    }

    /// The centre `width` × `height` of the mask, padded with `fill` where it is smaller.
    /// - Throws: `DataError.invalidArgument` for a size that is not positive.
    /// PyTorch counterpart: `torchvision.transforms.CenterCrop` on the mask (`fill` 0 there).
    public func centerCropped(width cropWidth: Int, height cropHeight: Int, fill: UInt8 = 0) throws -> LabelMap {
        try cropped(CropBox.centered(imageWidth: width, imageHeight: height, width: cropWidth, height: cropHeight), fill: fill)
    }

    /// The mask mirrored left to right (`F.hflip`).
    public func flippedHorizontally() -> LabelMap { LabelMap(plane.flippedHorizontally()) }

    /// The mask resized by nearest neighbour, so labels stay labels.
    /// - Throws: `DataError.invalidArgument` when a size is not positive or too large.
    /// PIL counterpart: `mask.resize((width, height), Image.NEAREST)` (Pillow's
    /// `ImagingScaleAffine`: source position `(x + 0.5) * in / out`, accumulated in doubles).
    public func resizedNearest(width newWidth: Int, height newHeight: Int) throws -> LabelMap {
        guard newWidth > 0, newHeight > 0, newWidth <= maximumImagePixels, newHeight <= maximumImagePixels,
              newWidth * newHeight <= maximumImagePixels else {
            throw DataError(.invalidArgument, file: "<mask>", "resize to \(newWidth)x\(newHeight): sizes must be positive and at most \(maximumImagePixels) pixels")
        }
        if newWidth == width, newHeight == height { return self }
        // Pillow: a = (double)(box[2] - box[0]) / xsize with a float box; x positions start at
        // a / 2 and grow by a, each truncated (negative → -1, out of range → left at 0)
        let ax = Double(Float(width)) / Double(newWidth)
        let ay = Double(Float(height)) / Double(newHeight)
        var columns = [Int](repeating: -1, count: newWidth)
        var xo = 0.0 + ax * 0.5
        for x in 0 ..< newWidth {
            let xin = xo < 0 ? -1 : Int(xo)
            if xin >= 0, xin < width { columns[x] = xin }
            xo += ax
        }
        var out = [UInt8](repeating: 0, count: newWidth * newHeight)
        var yo = 0.0 + ay * 0.5
        for y in 0 ..< newHeight {
            let yin = yo < 0 ? -1 : Int(yo)
            if yin >= 0, yin < height {
                for x in 0 ..< newWidth where columns[x] >= 0 {
                    out[y * newWidth + x] = labels[yin * width + columns[x]]
                }
            }
            yo += ay
        }
        return LabelMap(uncheckedWidth: newWidth, height: newHeight, labels: out)
    }
}
