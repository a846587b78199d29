//! Download statistics, readable at any time (`UpdateCore::stats`).

/// Counters of image blocks (pulled blocks or pushed /5/0/0 writes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Blocks handed to the core.
    pub blocks_received: u32,
    /// Block fetches the core asked the runtime for (pull).
    pub blocks_queued: u32,
    /// Blocks hashed and written to the candidate slot.
    pub blocks_processed: u32,
    /// Blocks refused: wrong offset, wrong state, beyond the signed size, or a duplicate.
    pub blocks_dropped: u32,
    /// Actions lost because the runtime did not drain the queue.
    pub actions_dropped: u32,
}
