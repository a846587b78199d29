//! The agent's own state file, `<state_dir>/agent.json`: the deployment in progress (so that a
//! restarted or rebooted agent can continue and report without asking the server), final
//! feedback not yet acknowledged by the server, the installed version, the last /5 state and
//! result, and the core's statistics (for `updraft-agent status`).
//!
//! This file is bookkeeping, not safety: the update's safety lives in the core's records in
//! `flash-state.bin`. It is replaced atomically (write, fsync, rename), so it is either the old
//! or the new version.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ddi::{Deployment, Feedback};

/// The file name under the state directory.
pub const AGENT_FILE: &str = "agent.json";

/// How many finished action ids are remembered (so a stale deployment link is not restarted).
const FINISHED_CAPACITY: usize = 16;

/// Counters of the device core (`updraft_device::stats::Stats`), as stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredStats {
    /// Blocks handed to the core.
    pub blocks_received: u32,
    /// Block fetches the core asked for.
    pub blocks_queued: u32,
    /// Blocks hashed and written.
    pub blocks_processed: u32,
    /// Blocks refused (duplicates, wrong offsets).
    pub blocks_dropped: u32,
    /// Core actions lost because the queue overflowed.
    pub actions_dropped: u32,
}

impl StoredStats {
    /// `self` plus the counters of a core run.
    pub fn plus(self, s: updraft_device::stats::Stats) -> StoredStats {
        StoredStats {
            blocks_received: self.blocks_received.saturating_add(s.blocks_received),
            blocks_queued: self.blocks_queued.saturating_add(s.blocks_queued),
            blocks_processed: self.blocks_processed.saturating_add(s.blocks_processed),
            blocks_dropped: self.blocks_dropped.saturating_add(s.blocks_dropped),
            actions_dropped: self.actions_dropped.saturating_add(s.actions_dropped),
        }
    }
}

impl From<updraft_device::stats::Stats> for StoredStats {
    fn from(s: updraft_device::stats::Stats) -> Self {
        StoredStats {
            blocks_received: s.blocks_received,
            blocks_queued: s.blocks_queued,
            blocks_processed: s.blocks_processed,
            blocks_dropped: s.blocks_dropped,
            actions_dropped: s.actions_dropped,
        }
    }
}

/// Everything in `agent.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentState {
    /// The deployment being worked on.
    pub deployment: Option<Deployment>,
    /// The image's ETag as the server sent it (for If-Range after a restart).
    pub etag: Option<String>,
    /// Final reports waiting for the server: `(action id, feedback)`.
    pub unsent: Vec<(String, Feedback)>,
    /// Recently finished action ids.
    pub finished: Vec<String>,
    /// Version of the running confirmed image, when known.
    pub installed_version: Option<String>,
    /// Last /5 State (`idle`, `downloading`, `downloaded`, `updating`).
    pub state: String,
    /// Last /5 Update Result, as its name.
    pub result: String,
    /// The outcome of the last finished action.
    pub last_outcome: Option<String>,
    /// Core statistics, summed over all agent processes (the core counts per process).
    pub stats: StoredStats,
    /// Agent starts counted.
    pub starts: u64,
}

impl AgentState {
    /// The path of the state file.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(AGENT_FILE)
    }

    /// Load; a missing file is the default, a corrupt one is logged and replaced.
    pub fn load(state_dir: &Path) -> AgentState {
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "agent state unreadable; starting afresh");
                AgentState::default()
            }),
            Err(_) => AgentState::default(),
        }
    }

    /// Replace the file atomically.
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let path = Self::path(state_dir);
        let tmp = state_dir.join(format!("{AGENT_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, &path)?;
        if let Ok(dir) = std::fs::File::open(state_dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Remember that `action_id` ended.
    pub fn mark_finished(&mut self, action_id: &str) {
        if !self.finished.iter().any(|a| a == action_id) {
            self.finished.push(action_id.to_string());
        }
        while self.finished.len() > FINISHED_CAPACITY {
            self.finished.remove(0);
        }
    }

    /// Whether `action_id` ended already.
    pub fn is_finished(&self, action_id: &str) -> bool {
        self.finished.iter().any(|a| a == action_id)
    }
}
