// N images, C channels, H rows, W columns (NCHW).

/// How an implicit GEMM on the microkernel (`C[rows × pixels] = A · B`, `B` unfolded from the input
/// straight into 48-column panels, per group) is cut into jobs for the cores: the output pixels of
/// the whole batch in chunks of up to eight panels (≤ 2 MiB unfolded, so one depth block of them
/// stays in a core's L2 cache), their count a multiple of the cores; when there are few chunks
/// (small planes, one image), each chunk's rows are split over the cores too (each lane then
/// unfolds the chunk itself). Each lane has its own panel and product buffers.
struct PanelSchedule {
    /// Groups of the product (each with its own `A`).
    let groups: Int
    /// Output pixels over the batch (columns of the product).
    let total: Int
    /// Pixels per chunk (a whole number of panels) and the number of chunks.
    let chunk: Int, chunks: Int
    /// 8-row panels of `A` and parts they are split into.
    let rowPanels: Int, splits: Int
    /// Jobs (`groups · chunks · splits`) and the lanes that run them.
    let jobs: Int, workers: Int
    /// Floats of one lane's unfolded panels, and of its panels and product together (64-byte multiple).
    let panelFloats: Int, laneFloats: Int

    /// The schedule of a product `rows` deep in output rows and `depth` in the unfolded matrix.
    init(pixels total: Int, depth: Int, rows: Int, groups: Int, lanes: Int = Gemm.threadCount) {
        let panelWidth = Microkernel.panelWidth
        let totalPanels = (total + panelWidth - 1) / panelWidth
        let largest = max(1, min(8, (2 << 20) / max(1, depth * panelWidth * 4)))
        var chunkCount = (totalPanels + largest - 1) / largest
        if chunkCount >= lanes { chunkCount = (chunkCount + lanes - 1) / lanes * lanes }
        let chunkPanels = max(1, (totalPanels + chunkCount - 1) / max(chunkCount, 1))
        self.groups = groups
        self.total = total
        chunk = chunkPanels * panelWidth
        chunks = (total + chunk - 1) / chunk
        rowPanels = (rows + 7) / 8
        splits = groups * chunks >= 4 * lanes ? 1 : max(1, min(lanes, rowPanels))
        jobs = groups * chunks * splits
        workers = max(1, min(lanes, jobs))
        panelFloats = depth * chunk
        laneFloats = (panelFloats + rows * chunk + 15) / 16 * 16
    }

    /// One job: its group, the pixels it covers and the 8-row panels it computes.
    struct Job {
        let group: Int
        let pixels: Range<Int>
        let rowPanels: Range<Int>
    }

    /// Runs `body(job, panels, product)` for every job, lanes in parallel; `panels` holds
    /// `panelFloats` floats (64-byte aligned) and `product` `rows · chunk` after them.
    func run(_ body: (Job, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
        if jobs == 0 { return }
        let workers = self.workers, laneFloats = self.laneFloats
        withUnsafeTemporaryAllocation(byteCount: workers * laneFloats * 4, alignment: 64) { sb in
            guard let s = sb.baseAddress?.bindMemory(to: Float.self, capacity: workers * laneFloats) else { return }
            let box = UncheckedSendable(s)
            parallelFor(workers) { lane in
                let panels = box.value + lane * laneFloats
                var job = lane
                while job < jobs {
                    defer { job += workers }
                    let split = job % splits
                    let chunkIndex = (job / splits) % chunks
                    let i0 = chunkIndex * chunk
                    body(Job(group: job / (splits * chunks), pixels: i0 ..< min(total, i0 + chunk),
                             rowPanels: split * rowPanels / splits ..< (split + 1) * rowPanels / splits),
                         panels, panels + panelFloats)
                }
            }
        }
    }
}
