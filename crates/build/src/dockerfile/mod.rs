//! The Dockerfile language: parsed into stages of instructions (ast.rs,
//! parse.rs), words expanded as BuildKit's shell lexer does (words.rs),
//! and `.dockerignore` patterns (ignore.rs).

pub mod ast;
mod flags;
pub mod ignore;
mod lines;
mod mount;
pub mod parse;
pub mod words;

pub use ast::*;
pub use ignore::{Ignore, IgnoreError};
pub use parse::{ParseError, parse, parse_instruction};
pub use words::{ExpandError, expand, expand_text, split_words};
