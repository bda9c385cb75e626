//! ONBUILD triggers: kept as written in the base image's config, parsed
//! when a build uses that image as its base.

use crate::dockerfile::{self, Instruction};

/// The trigger's instruction.
pub fn parse_trigger(text: &str) -> Result<Instruction, String> {
    dockerfile::parse_instruction(text, '\\').map_err(|e| e.message)
}
