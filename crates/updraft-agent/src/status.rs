//! `updraft-agent status`: the boot state and journal (read-only, from the state file) and the
//! agent's bookkeeping (`agent.json`), without starting the core or touching the network.

use std::fmt::Write as _;

use updraft_device::boot::{BootState, Trial};
use updraft_device::journal::Journal;

use crate::config::AgentConfig;
use crate::runtime::{layout, open_flash};
use crate::state::AgentState;

/// The status report as text.
pub fn report(config: &AgentConfig) -> anyhow::Result<String> {
    let layout = layout(config);
    let mut flash = open_flash(config)?;
    let boot = BootState::load(&mut flash, &layout)
        .map_err(|e| anyhow::anyhow!("reading the boot state: {e}"))?;
    let journal = Journal::load(&mut flash, &layout)
        .map_err(|e| anyhow::anyhow!("reading the journal: {e}"))?;
    let st = AgentState::load(&config.state_dir);
    let mut out = String::new();
    let trial = match boot.trial {
        None => "none".to_string(),
        Some(Trial::Pending(c)) => {
            format!("pending in slot {:?} (sequence {})", c.slot, c.sequence)
        }
        Some(Trial::Booted(c)) => format!("booted in slot {:?} (sequence {})", c.slot, c.sequence),
    };
    let _ = writeln!(out, "device:             {}", config.controller_id);
    let _ = writeln!(out, "state:              {}", or_unknown(&st.state));
    let _ = writeln!(out, "result:             {}", or_unknown(&st.result));
    let _ = writeln!(
        out,
        "installed version:  {}",
        st.installed_version.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(out, "active slot:        {:?}", boot.active);
    let _ = writeln!(out, "installed sequence: {}", boot.installed_sequence);
    let _ = writeln!(out, "trial:              {trial}");
    if let Some((s, _)) = boot.last {
        let _ = writeln!(out, "last trial:         {s:?}");
    }
    let _ = writeln!(
        out,
        "journal:            {:?} at offset {}",
        journal.phase, journal.offset
    );
    if let Some(d) = &st.deployment {
        let _ = writeln!(
            out,
            "deployment:         action {} ({})",
            d.action_id, d.version
        );
    }
    if let Some(o) = &st.last_outcome {
        let _ = writeln!(out, "last outcome:       {o}");
    }
    let _ = writeln!(out, "unsent reports:     {}", st.unsent.len());
    let s = st.stats;
    let _ = writeln!(
        out,
        "blocks:             received {} queued {} processed {} dropped {} (actions dropped {})",
        s.blocks_received, s.blocks_queued, s.blocks_processed, s.blocks_dropped, s.actions_dropped
    );
    let _ = writeln!(out, "agent starts:       {}", st.starts);
    Ok(out)
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "unknown" } else { s }
}
