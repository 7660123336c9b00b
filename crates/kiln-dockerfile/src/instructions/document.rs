//! A whole source → a [`Dockerfile`]: the logical lines of
//! [`crate::syntax::lines`], each parsed into its typed instruction.

use super::parse::parse_instruction;
use super::Dockerfile;
use crate::error::Error;
use crate::syntax::lines;

/// Parses instructions without requiring a FROM (ONBUILD triggers; the
/// crate's `parse` adds the stage checks).
pub(crate) fn parse_fragment(file_name: &str, source: &str) -> Result<Dockerfile, Error> {
    let src = lines::read(file_name, source)?;
    let mut instructions = Vec::with_capacity(src.logical.len());
    for line in &src.logical {
        let ctx = src.ctx(file_name, line);
        instructions.push(parse_instruction(&ctx, line.heredocs.clone())?);
    }
    if instructions.is_empty() {
        return Err(Error::new(
            file_name,
            "the Dockerfile has no instructions (only comments and blank lines)",
        )
        .with_note("hint: a Dockerfile starts with FROM <image>, e.g. FROM alpine:3.20"));
    }
    Ok(Dockerfile {
        file_name: file_name.to_string(),
        escape: src.escape,
        directives: src.directives,
        instructions,
        warnings: src.warnings,
        lines: src.lines,
    })
}
